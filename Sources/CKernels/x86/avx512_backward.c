/* AVX-512 backward row kernels for training: LayerNorm backward and the activation
 * derivatives (QuickGELU, exact GELU), 16 floats per zmm register, opmask tails.
 *
 * Semantics are those of ref/backward_reference.c, the oracle the tests hold these to; the
 * forward arithmetic they differentiate (mean and variance, σ, Φ) is avx512_vec.c's, so a
 * step's backward sees the statistics its forward used, up to the last rounding. */
#if defined(__x86_64__)
#include "x86_kernels.h"
#include <immintrin.h>
#include <math.h>

#define AVX512_KERNEL __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define AVX512_INLINE \
    static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl")))

enum { LANES = 16 };

/* Lanes [0, n) for n ≤ 16. */
AVX512_INLINE __mmask16 tail_mask(long n) { return _cvtu32_mask16((1u << n) - 1u); }

/* ---- transcendental functions --------------------------------------------------------
 * The same exp16 and erfc16 as avx512_vec.c (which keeps them static): Cephes expf with a
 * Cody–Waite ln2 and vscalefps for 2^n, within 1 ulp of expf; Numerical Recipes' erfcc fit,
 * relative error < 1.2e-7. The derivatives must use the forward's σ and Φ. */

AVX512_INLINE __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);

    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

AVX512_INLINE __m512 erfc16(__m512 z) {
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                             _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    return _mm512_mul_ps(t, exp16(_mm512_fnmadd_ps(z, z, p)));
}

/* ---- activation derivatives ----------------------------------------------------------- */

/* forward: y = x · σ(1.702 x), σ(u) = 1 / (1 + e^(−u))
 * ⇒ y' = σ · (1 + 1.702 x · (1 − σ)) = σ + 1.702 · (σ x) · (1 − σ). 1 − σ is taken as
 * e^(−u) · σ, which keeps its relative accuracy for large x (where 1 − σ would cancel and
 * 1.702 x magnifies the loss); where e^(−u) overflows, e · σ = inf · 0 is NaN and vminps
 * (its second operand when one is NaN) makes it 1. σ x is formed first so no finite x
 * overflows: σ = 0 where 1.702 x would. */
AVX512_INLINE __m512 quickgelu_grad16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = exp16(_mm512_mul_ps(x, _mm512_set1_ps(-1.702f)));
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, e));
    __m512 rest = _mm512_min_ps(_mm512_mul_ps(e, s), one);
    return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(s, x), rest), _mm512_set1_ps(1.702f), s);
}

/* forward: y = x · Φ(x) ⇒ y' = Φ(x) + x · φ(x), φ(x) = e^(−x²/2) / √(2π). Φ as gelu16 takes
 * it, from erfc(|x|/√2) on the side where it does not cancel. */
AVX512_INLINE __m512 gelu_grad16(__m512 x) {
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), erfc16(z));
    __mmask16 negative = _mm512_movepi32_mask(_mm512_castps_si512(x)); /* sign bits */
    __m512 cdf = _mm512_mask_blend_ps(negative, _mm512_sub_ps(_mm512_set1_ps(1.0f), h), h);
    __m512 pdf = _mm512_mul_ps(exp16(_mm512_mul_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-0.5f))),
                               _mm512_set1_ps(0.39894228040143268f));
    return _mm512_fmadd_ps(x, pdf, cdf);
}

/* dx[i] = dy[i] · act'(x[i]); each lane reads its dy before it writes dx, so dx may be dy. */
AVX512_KERNEL
void m2k_avx512_activation_backward(m2k_activation act, const float *x, const float *dy,
                                    float *dx, size_t n) {
    for (size_t i = 0; i < n; i += LANES) {
        __mmask16 k = tail_mask(n - i < LANES ? (long)(n - i) : LANES);
        __m512 g = _mm512_maskz_loadu_ps(k, dy + i);
        switch (act) {
        case M2K_ACT_QUICKGELU:
            g = _mm512_mul_ps(g, quickgelu_grad16(_mm512_maskz_loadu_ps(k, x + i)));
            break;
        case M2K_ACT_GELU:
            g = _mm512_mul_ps(g, gelu_grad16(_mm512_maskz_loadu_ps(k, x + i)));
            break;
        default: break; /* identity: y' = 1 */
        }
        _mm512_mask_storeu_ps(dx + i, k, g);
    }
}

/* ---- LayerNorm backward ----------------------------------------------------------------
 * forward: x̂ = (x − μ) / σ, y = x̂ · γ + β, σ = sqrt(var + eps)
 * ⇒ dx̂ = dy · γ;  dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) / σ;  dγ += dy · x̂;  dβ += dy.
 * μ and var are recomputed as m2k_avx512_layernorm computes them (corrected two-pass in
 * fp32, the mean kept as the pair (m, shift)), so x̂ is the forward's x̂. Tail lanes load dy
 * as 0, which zeroes their dx̂, dx̂ · x̂ and dy · x̂ without a mask on every sum. */
AVX512_KERNEL
void m2k_avx512_layernorm_backward(const float *x, long ldx, const float *dy, long lddy,
                                   const float *gamma, float *dx, long lddx, float *dgamma,
                                   float *dbeta, long rows, long cols, float eps,
                                   int accumulate) {
    if (cols <= 0) return;
    const long tail = cols % LANES, body = cols - tail;
    const __mmask16 kt = tail_mask(tail);
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx, *g = dy + r * lddy;

        /* mean and variance: the forward's three passes, of which the first two here */
        __m512 s = _mm512_maskz_loadu_ps(kt, xr + body);
        for (long j = 0; j < body; j += LANES) s = _mm512_add_ps(s, _mm512_loadu_ps(xr + j));
        const float m = _mm512_reduce_add_ps(s) / (float)cols;
        const __m512 vm = _mm512_set1_ps(m);
        __m512 d = _mm512_maskz_sub_ps(kt, _mm512_maskz_loadu_ps(kt, xr + body), vm);
        __m512 sd = d, sq = _mm512_mul_ps(d, d);
        for (long j = 0; j < body; j += LANES) {
            d = _mm512_sub_ps(_mm512_loadu_ps(xr + j), vm);
            sd = _mm512_add_ps(sd, d);
            sq = _mm512_fmadd_ps(d, d, sq);
        }
        const float shift = _mm512_reduce_add_ps(sd) / (float)cols;
        float var = _mm512_reduce_add_ps(sq) / (float)cols - shift * shift;
        if (var < 0.0f) var = 0.0f;
        const __m512 vshift = _mm512_set1_ps(shift);
        const __m512 inv = _mm512_set1_ps((float)(1.0 / sqrt((double)var + eps)));

        /* Σ dx̂ and Σ dx̂ · x̂; dγ += dy · x̂, dβ += dy */
        __m512 sg = _mm512_setzero_ps(), sgx = _mm512_setzero_ps();
        for (long j = 0; j < cols; j += LANES) {
            __mmask16 k = j < body ? (__mmask16)0xffff : kt;
            __m512 xh = _mm512_mul_ps(
                _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), vm), vshift), inv);
            __m512 gj = _mm512_maskz_loadu_ps(k, g + j);
            __m512 dxh = _mm512_mul_ps(gj, _mm512_maskz_loadu_ps(k, gamma + j));
            sg = _mm512_add_ps(sg, dxh);
            sgx = _mm512_fmadd_ps(dxh, xh, sgx);
            if (dgamma) {
                __m512 acc = _mm512_maskz_loadu_ps(k, dgamma + j);
                _mm512_mask_storeu_ps(dgamma + j, k, _mm512_fmadd_ps(gj, xh, acc));
            }
            if (dbeta) {
                __m512 acc = _mm512_maskz_loadu_ps(k, dbeta + j);
                _mm512_mask_storeu_ps(dbeta + j, k, _mm512_add_ps(acc, gj));
            }
        }
        if (!dx) continue;
        const __m512 mdx = _mm512_set1_ps(_mm512_reduce_add_ps(sg) / (float)cols);
        const __m512 mdxx = _mm512_set1_ps(_mm512_reduce_add_ps(sgx) / (float)cols);

        /* dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) / σ, written or added */
        float *out = dx + r * lddx;
        for (long j = 0; j < cols; j += LANES) {
            __mmask16 k = j < body ? (__mmask16)0xffff : kt;
            __m512 xh = _mm512_mul_ps(
                _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), vm), vshift), inv);
            __m512 dxh = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + j),
                                       _mm512_maskz_loadu_ps(k, gamma + j));
            __m512 v = _mm512_mul_ps(_mm512_fnmadd_ps(xh, mdxx, _mm512_sub_ps(dxh, mdx)), inv);
            if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, out + j), v);
            _mm512_mask_storeu_ps(out + j, k, v);
        }
    }
}
#endif
