/* AVX2 + FMA backward row kernels for training: LayerNorm backward and the activation
 * derivatives (QuickGELU, exact GELU), 8 floats per ymm register.
 *
 * Semantics are those of ref/backward_reference.c, the oracle the tests hold these to; the
 * forward arithmetic they differentiate (mean and variance, σ, Φ) is avx2_vec.c's. Rows of
 * any length work: the last partial vector goes through vmaskmov, which neither reads nor
 * writes memory past the row. */
#if defined(__x86_64__)
#include "x86_kernels.h"
#include <immintrin.h>
#include <math.h>

#define AVX2_KERNEL __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

enum { LANES = 8 };

/* ---- row tails and reductions (as in avx2_vec.c) --------------------------------------- */

/* The vmaskmov mask selecting lanes [0, n), n ≤ 8. */
AVX2_INLINE __m256i tail_mask(long n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Lanes [0, n) of p, n ≤ 8; the others read as 0.0 without touching memory. */
AVX2_INLINE __m256 load_part(const float *p, long n) {
    return n == LANES ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(n));
}

AVX2_INLINE void store_part(float *p, long n, __m256 v) {
    if (n == LANES)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, tail_mask(n), v);
}

AVX2_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- transcendental functions --------------------------------------------------------
 * The same exp8 and erfc8 as avx2_vec.c (which keeps them static): Cephes expf with a
 * Cody–Waite ln2 and 2^n applied as two halves (correct into the subnormals), within 1 ulp
 * of expf; Numerical Recipes' erfcc fit, relative error < 1.2e-7. The derivatives must use
 * the forward's σ and Φ. */

AVX2_INLINE __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);

    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));

    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

AVX2_INLINE __m256 erfc8(__m256 z) {
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    return _mm256_mul_ps(t, exp8(_mm256_fnmadd_ps(z, z, p)));
}

/* ---- activation derivatives ----------------------------------------------------------- */

/* forward: y = x · σ(1.702 x), σ(u) = 1 / (1 + e^(−u))
 * ⇒ y' = σ · (1 + 1.702 x · (1 − σ)) = σ + 1.702 · (σ x) · (1 − σ). 1 − σ is taken as
 * e^(−u) · σ, which keeps its relative accuracy for large x (where 1 − σ would cancel and
 * 1.702 x magnifies the loss); where e^(−u) overflows, e · σ = inf · 0 is NaN and vminps
 * (its second operand when one is NaN) makes it 1. σ x is formed first so no finite x
 * overflows: σ = 0 where 1.702 x would. */
AVX2_INLINE __m256 quickgelu_grad8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_mul_ps(x, _mm256_set1_ps(-1.702f)));
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
    __m256 rest = _mm256_min_ps(_mm256_mul_ps(e, s), one);
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(s, x), rest), _mm256_set1_ps(1.702f), s);
}

/* forward: y = x · Φ(x) ⇒ y' = Φ(x) + x · φ(x), φ(x) = e^(−x²/2) / √(2π). Φ as gelu8 takes
 * it, from erfc(|x|/√2) on the side where it does not cancel (blendv on x's sign bit). */
AVX2_INLINE __m256 gelu_grad8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(0.70710678118654752f));
    __m256 h = _mm256_mul_ps(_mm256_set1_ps(0.5f), erfc8(z));
    __m256 cdf = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), h), h, x);
    __m256 pdf = _mm256_mul_ps(exp8(_mm256_mul_ps(_mm256_mul_ps(x, x), _mm256_set1_ps(-0.5f))),
                               _mm256_set1_ps(0.39894228040143268f));
    return _mm256_fmadd_ps(x, pdf, cdf);
}

/* dx[i] = dy[i] · act'(x[i]); each lane reads its dy before it writes dx, so dx may be dy. */
AVX2_KERNEL
void m2k_avx2_activation_backward(m2k_activation act, const float *x, const float *dy,
                                  float *dx, size_t n) {
    for (size_t i = 0; i < n; i += LANES) {
        const long len = n - i < LANES ? (long)(n - i) : LANES;
        __m256 g = load_part(dy + i, len);
        switch (act) {
        case M2K_ACT_QUICKGELU: g = _mm256_mul_ps(g, quickgelu_grad8(load_part(x + i, len))); break;
        case M2K_ACT_GELU: g = _mm256_mul_ps(g, gelu_grad8(load_part(x + i, len))); break;
        default: break; /* identity: y' = 1 */
        }
        store_part(dx + i, len, g);
    }
}

/* ---- LayerNorm backward ----------------------------------------------------------------
 * forward: x̂ = (x − μ) / σ, y = x̂ · γ + β, σ = sqrt(var + eps)
 * ⇒ dx̂ = dy · γ;  dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) / σ;  dγ += dy · x̂;  dβ += dy.
 * μ and var are recomputed as m2k_avx2_layernorm computes them (corrected two-pass in fp32,
 * the mean kept as the pair (m, shift)), so x̂ is the forward's x̂. Tail lanes load dy as 0,
 * which zeroes their dx̂, dx̂ · x̂ and dy · x̂ without a mask on every sum. */
AVX2_KERNEL
void m2k_avx2_layernorm_backward(const float *x, long ldx, const float *dy, long lddy,
                                 const float *gamma, float *dx, long lddx, float *dgamma,
                                 float *dbeta, long rows, long cols, float eps, int accumulate) {
    if (cols <= 0) return;
    const long tail = cols % LANES, body = cols - tail;
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx, *g = dy + r * lddy;

        /* mean and variance: the forward's first two passes */
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        long j = 0;
        for (; j + 2 * LANES <= body; j += 2 * LANES) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + j));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + j + LANES));
        }
        if (j < body) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + j));
        if (tail) s1 = _mm256_add_ps(s1, load_part(xr + body, tail));
        const float m = hsum(_mm256_add_ps(s0, s1)) / (float)cols;
        const __m256 vm = _mm256_set1_ps(m);
        __m256 sd = _mm256_setzero_ps(), sq = _mm256_setzero_ps();
        for (j = 0; j < body; j += LANES) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + j), vm);
            sd = _mm256_add_ps(sd, d);
            sq = _mm256_fmadd_ps(d, d, sq);
        }
        if (tail) { /* lanes past the row read 0 and would contribute −m: mask them out */
            __m256 d = _mm256_and_ps(_mm256_sub_ps(load_part(xr + body, tail), vm),
                                     _mm256_castsi256_ps(tail_mask(tail)));
            sd = _mm256_add_ps(sd, d);
            sq = _mm256_fmadd_ps(d, d, sq);
        }
        const float shift = hsum(sd) / (float)cols;
        float var = hsum(sq) / (float)cols - shift * shift;
        if (var < 0.0f) var = 0.0f;
        const __m256 vshift = _mm256_set1_ps(shift);
        const __m256 inv = _mm256_set1_ps((float)(1.0 / sqrt((double)var + eps)));

        /* Σ dx̂ and Σ dx̂ · x̂; dγ += dy · x̂, dβ += dy */
        __m256 sg = _mm256_setzero_ps(), sgx = _mm256_setzero_ps();
        for (j = 0; j < cols; j += LANES) {
            const long len = cols - j < LANES ? cols - j : LANES;
            __m256 xh = _mm256_mul_ps(
                _mm256_sub_ps(_mm256_sub_ps(load_part(xr + j, len), vm), vshift), inv);
            __m256 gj = load_part(g + j, len);
            __m256 dxh = _mm256_mul_ps(gj, load_part(gamma + j, len));
            sg = _mm256_add_ps(sg, dxh);
            sgx = _mm256_fmadd_ps(dxh, xh, sgx);
            if (dgamma)
                store_part(dgamma + j, len, _mm256_fmadd_ps(gj, xh, load_part(dgamma + j, len)));
            if (dbeta) store_part(dbeta + j, len, _mm256_add_ps(load_part(dbeta + j, len), gj));
        }
        if (!dx) continue;
        const __m256 mdx = _mm256_set1_ps(hsum(sg) / (float)cols);
        const __m256 mdxx = _mm256_set1_ps(hsum(sgx) / (float)cols);

        /* dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) / σ, written or added */
        float *out = dx + r * lddx;
        for (j = 0; j < cols; j += LANES) {
            const long len = cols - j < LANES ? cols - j : LANES;
            __m256 xh = _mm256_mul_ps(
                _mm256_sub_ps(_mm256_sub_ps(load_part(xr + j, len), vm), vshift), inv);
            __m256 dxh = _mm256_mul_ps(load_part(g + j, len), load_part(gamma + j, len));
            __m256 v = _mm256_mul_ps(_mm256_fnmadd_ps(xh, mdxx, _mm256_sub_ps(dxh, mdx)), inv);
            if (accumulate) v = _mm256_add_ps(load_part(out + j, len), v);
            store_part(out + j, len, v);
        }
    }
}
#endif
