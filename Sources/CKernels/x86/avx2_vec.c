/* AVX2 + FMA element-wise kernels: bias + activation (the GEMM epilogue), LayerNorm,
 * softmax, QuickGELU, GELU and the residual add, 8 floats per ymm register.
 *
 * Semantics are exactly those of ref/reference.c, the oracle the tests hold these to.
 * Rows of any length work: the last partial vector of a row goes through vmaskmov, which
 * neither reads nor writes memory past the row (no scalar tail, no over-read). */
#if defined(__x86_64__)
#include "x86_kernels.h"
#include <immintrin.h>
#include <math.h>

/* Exported kernels and the helpers they inline share one target: no global -m flags, so a
 * build for a baseline x86-64 still runs on CPUs without AVX2 (dispatch never picks us). */
#define AVX2_KERNEL __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

enum { LANES = 8 };

/* ---- row tails ------------------------------------------------------------------------ */

/* The vmaskmov mask selecting lanes [0, n), n ≤ 8: a lane is on when its sign bit is set. */
AVX2_INLINE __m256i tail_mask(long n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Lanes [0, n) of p; the others read as 0.0 without touching memory. */
AVX2_INLINE __m256 load_tail(const float *p, long n) {
    return _mm256_maskload_ps(p, tail_mask(n));
}

AVX2_INLINE void store_tail(float *p, long n, __m256 v) {
    _mm256_maskstore_ps(p, tail_mask(n), v);
}

/* ---- horizontal reductions ------------------------------------------------------------ */

AVX2_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_INLINE float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- transcendental functions --------------------------------------------------------- */

/* e^x, within 1 ulp of glibc's expf over the whole float range (Cephes expf):
 *   x = n·ln2 + r, |r| ≤ ln2/2,   e^x = 2^n · (1 + r + r²·P(r)).
 * ln2 is split in two (Cody–Waite) so that n·ln2 comes off x without eating r's bits.
 * 2^n is assembled in the exponent field in two halves, 2^(n/2) · 2^(n − n/2): a single
 * factor stops at 2^-126, the halves let the product round correctly into the subnormals
 * the way expf does. Clamping x to [-104, 89] bounds n; e^-104 already rounds to 0 and
 * e^89 overflows to +inf, so -inf → 0, +inf → +inf. NaN passes the clamps (max/min
 * return their second operand when one is NaN) and the polynomial, and comes out NaN. */
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

    __m256i ni = _mm256_cvtps_epi32(n);          /* [-150, 129] */
    __m256i n1 = _mm256_srai_epi32(ni, 1);        /* [-75, 64] */
    __m256i n2 = _mm256_sub_epi32(ni, n1);        /* [-75, 65] */
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

/* erfc(z) for z ≥ 0 with relative error < 1.2e-7 (the Chebyshev fit "erfcc" of Numerical
 * Recipes, 2nd ed., §6.2):  erfc(z) ≈ t · exp(−z² − 1.26551223 + t·(1.00002368 + …)),
 * t = 1 / (1 + z/2). Relative rather than absolute accuracy in erfc is what GELU needs on
 * its negative side, where x·Φ(x) is the small difference 1 + erf(x/√2). z = +inf gives
 * t = 0 and e^-inf = 0, so 0. */
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

/* ---- activations ---------------------------------------------------------------------- */

/* QuickGELU, CLIP's MLP activation: x · σ(1.702 x) = x / (1 + e^(−1.702 x)). A true
 * division, not vrcpps: the reference divides and the tests hold us to ~1e-6. For very
 * negative x, e^… is +inf and the quotient −0, as in the reference. */
AVX2_INLINE __m256 quickgelu8(__m256 x) {
    __m256 e = exp8(_mm256_mul_ps(x, _mm256_set1_ps(-1.702f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* Exact GELU, x · Φ(x), written with erfc(|x|/√2) so neither side cancels:
 *   x ≥ 0:  x · (1 − ½·erfc(x/√2))        x < 0:  x · ½·erfc(−x/√2).
 * Scaling x by a factor in [0, 1] keeps ±inf at ±inf·{1, 0} as the reference has it. */
AVX2_INLINE __m256 gelu8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(0.70710678118654752f));
    __m256 h = _mm256_mul_ps(_mm256_set1_ps(0.5f), erfc8(z));
    __m256 phi = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), h), h, x);
    return _mm256_mul_ps(x, phi);
}

AVX2_INLINE __m256 activate8(__m256 v, m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return quickgelu8(v);
    case M2K_ACT_GELU: return gelu8(v);
    default: return v;
    }
}

/* ---- kernels -------------------------------------------------------------------------- */

AVX2_KERNEL
void m2k_avx2_bias_act(float *c, long ldc, int m, int n, const float *bias,
                       m2k_activation act) {
    for (int i = 0; i < m; i++) {
        float *row = c + (long)i * ldc;
        long j = 0;
        for (; j + LANES <= n; j += LANES) {
            __m256 v = _mm256_loadu_ps(row + j);
            if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + j));
            _mm256_storeu_ps(row + j, activate8(v, act));
        }
        if (j < n) {
            __m256 v = load_tail(row + j, n - j);
            if (bias) v = _mm256_add_ps(v, load_tail(bias + j, n - j));
            store_tail(row + j, n - j, activate8(v, act));
        }
    }
}

/* Three passes per row, all in fp32: a first mean m; then the deviations d = x − m, whose
 * sum corrects m for the rounding of pass one (the corrected two-pass algorithm of Chan,
 * Golub & LeVeque): var = Σd²/n − (Σd/n)², mean = m + Σd/n; then the normalisation.
 * The mean stays the unrounded pair (m, shift): x − m is exact for x near m, so
 * (x − m) − shift loses nothing to rounding m + shift to a float, which matters when
 * |mean| ≫ std (the reference keeps its mean in double). */
AVX2_KERNEL
void m2k_avx2_layernorm(const float *x, float *y, const float *gamma, const float *beta,
                        long rows, long cols, long ldx, long ldy, float eps) {
    if (cols <= 0) return;
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        const long tail = cols % LANES, body = cols - tail;

        /* Two accumulators: half the dependency chain, and a slightly better sum. */
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        long j = 0;
        for (; j + 2 * LANES <= body; j += 2 * LANES) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + j));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + j + LANES));
        }
        if (j < body) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + j));
        if (tail) s1 = _mm256_add_ps(s1, load_tail(xr + body, tail));
        const float m = hsum(_mm256_add_ps(s0, s1)) / (float)cols;

        const __m256 vm = _mm256_set1_ps(m);
        __m256 sd = _mm256_setzero_ps(), sq = _mm256_setzero_ps();
        for (j = 0; j < body; j += LANES) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + j), vm);
            sd = _mm256_add_ps(sd, d);
            sq = _mm256_fmadd_ps(d, d, sq);
        }
        if (tail) {
            /* The lanes past the row read 0 and would contribute −m: mask them out. */
            __m256 d = _mm256_and_ps(_mm256_sub_ps(load_tail(xr + body, tail), vm),
                                     _mm256_castsi256_ps(tail_mask(tail)));
            sd = _mm256_add_ps(sd, d);
            sq = _mm256_fmadd_ps(d, d, sq);
        }
        const float shift = hsum(sd) / (float)cols;
        float var = hsum(sq) / (float)cols - shift * shift;
        if (var < 0.0f) var = 0.0f;
        const __m256 vshift = _mm256_set1_ps(shift);
        const __m256 inv = _mm256_set1_ps((float)(1.0 / sqrt((double)var + eps)));

        for (j = 0; j < body; j += LANES) {
            __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), vm), vshift);
            __m256 v = _mm256_mul_ps(d, inv);
            _mm256_storeu_ps(yr + j, _mm256_fmadd_ps(v, _mm256_loadu_ps(gamma + j),
                                                     _mm256_loadu_ps(beta + j)));
        }
        if (tail) {
            __m256 d = _mm256_sub_ps(_mm256_sub_ps(load_tail(xr + body, tail), vm), vshift);
            __m256 v = _mm256_mul_ps(d, inv);
            store_tail(yr + body, tail,
                       _mm256_fmadd_ps(v, load_tail(gamma + body, tail),
                                       load_tail(beta + body, tail)));
        }
    }
}

/* Per row: the max of scale·x over the valid prefix, e^(scale·x − max) in place with their
 * sum, a multiply by 1/sum, zeros after the prefix. scale·x is rounded before the max is
 * subtracted, as in the reference, so the largest term is exactly e^0 = 1. */
AVX2_KERNEL
void m2k_avx2_softmax(float *x, long rows, long cols, long ld, float scale, int causal,
                      long causal_offset) {
    const __m256 vscale = _mm256_set1_ps(scale);
    for (long r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        long valid = causal ? r + causal_offset + 1 : cols;
        if (valid > cols) valid = cols;
        if (valid < 0) valid = 0;
        const long tail = valid % LANES, body = valid - tail;

        if (valid > 0) {
            __m256 vmax = _mm256_set1_ps(-INFINITY);
            for (long j = 0; j < body; j += LANES)
                vmax = _mm256_max_ps(vmax, _mm256_mul_ps(_mm256_loadu_ps(xr + j), vscale));
            if (tail) {
                __m256 v = _mm256_mul_ps(load_tail(xr + body, tail), vscale);
                v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v,
                                     _mm256_castsi256_ps(tail_mask(tail)));
                vmax = _mm256_max_ps(vmax, v);
            }
            const __m256 mx = _mm256_set1_ps(hmax(vmax));

            __m256 vsum = _mm256_setzero_ps();
            for (long j = 0; j < body; j += LANES) {
                __m256 e = exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + j), vscale), mx));
                _mm256_storeu_ps(xr + j, e);
                vsum = _mm256_add_ps(vsum, e);
            }
            if (tail) {
                __m256 e = exp8(_mm256_sub_ps(_mm256_mul_ps(load_tail(xr + body, tail), vscale),
                                              mx));
                store_tail(xr + body, tail, e);
                /* Lanes past the prefix computed e^(0 − max), which may be +inf: drop them. */
                vsum = _mm256_add_ps(vsum,
                                     _mm256_and_ps(e, _mm256_castsi256_ps(tail_mask(tail))));
            }
            const __m256 inv = _mm256_set1_ps((float)(1.0 / (double)hsum(vsum)));
            for (long j = 0; j < body; j += LANES)
                _mm256_storeu_ps(xr + j, _mm256_mul_ps(_mm256_loadu_ps(xr + j), inv));
            if (tail)
                store_tail(xr + body, tail, _mm256_mul_ps(load_tail(xr + body, tail), inv));
        }

        /* Masked-out columns: zero from `valid`, which need not be vector aligned. */
        long j = valid;
        for (; j + LANES <= cols; j += LANES) _mm256_storeu_ps(xr + j, _mm256_setzero_ps());
        if (j < cols) store_tail(xr + j, cols - j, _mm256_setzero_ps());
    }
}

AVX2_KERNEL
void m2k_avx2_quickgelu(float *x, size_t n) {
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) _mm256_storeu_ps(x + i, quickgelu8(_mm256_loadu_ps(x + i)));
    if (i < n) store_tail(x + i, (long)(n - i), quickgelu8(load_tail(x + i, (long)(n - i))));
}

AVX2_KERNEL
void m2k_avx2_gelu(float *x, size_t n) {
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) _mm256_storeu_ps(x + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) store_tail(x + i, (long)(n - i), gelu8(load_tail(x + i, (long)(n - i))));
}

AVX2_KERNEL
void m2k_avx2_add(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    if (i < n) {
        long t = (long)(n - i);
        store_tail(y + i, t, _mm256_add_ps(load_tail(y + i, t), load_tail(x + i, t)));
    }
}
#endif
