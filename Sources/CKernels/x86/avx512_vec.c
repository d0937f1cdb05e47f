/* AVX-512 element-wise kernels: bias + activation (the GEMM epilogue), LayerNorm, softmax,
 * QuickGELU, GELU and the residual add, 16 floats per zmm register.
 *
 * Semantics are exactly those of ref/reference.c, the oracle the tests hold these to.
 * The same algorithms as avx2_vec.c, written with what AVX-512 adds: opmask registers
 * for row tails (masked loads fault on no lane past the row; masked adds and maxes leave
 * the lanes past it alone, so no blends) and vscalefps for the 2^n of exp. */
#if defined(__x86_64__)
#include "x86_kernels.h"
#include <immintrin.h>
#include <math.h>

/* Exported kernels and the helpers they inline share one target: no global -m flags; the
 * set is the one dispatch checks before it hands out this table. */
#define AVX512_KERNEL __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define AVX512_INLINE \
    static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl")))

enum { LANES = 16 };

/* Lanes [0, n) for n ≤ 16. */
AVX512_INLINE __mmask16 tail_mask(long n) { return _cvtu32_mask16((1u << n) - 1u); }

/* ---- transcendental functions --------------------------------------------------------- */

/* e^x, within 1 ulp of glibc's expf over the whole float range (Cephes expf):
 *   x = n·ln2 + r, |r| ≤ ln2/2,   e^x = 2^n · (1 + r + r²·P(r)),
 * ln2 split in two (Cody–Waite) so n·ln2 comes off x without eating r's bits. vscalefps
 * applies 2^n with a single rounding, into the subnormals and to ±inf, so only n needs
 * bounding: clamping x to [-104, 89] keeps it finite (e^-104 rounds to 0, e^89 overflows)
 * and makes -inf → 0, +inf → +inf. NaN passes the clamps (max/min return their second
 * operand when one is NaN) and comes out NaN. */
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

/* erfc(z) for z ≥ 0 with relative error < 1.2e-7 (Numerical Recipes' Chebyshev fit
 * "erfcc", 2nd ed., §6.2): erfc(z) ≈ t · exp(−z² − 1.26551223 + t·(1.00002368 + …)),
 * t = 1 / (1 + z/2). Relative accuracy in erfc is what GELU needs for negative x, where
 * x·Φ(x) is the small difference 1 + erf(x/√2). */
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

/* ---- activations ---------------------------------------------------------------------- */

/* QuickGELU: x · σ(1.702 x) = x / (1 + e^(−1.702 x)), with a true division as the
 * reference has (vrcp14ps alone is good to 2^-14 only). */
AVX512_INLINE __m512 quickgelu16(__m512 x) {
    __m512 e = exp16(_mm512_mul_ps(x, _mm512_set1_ps(-1.702f)));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* Exact GELU, x · Φ(x), with erfc(|x|/√2) so neither side cancels:
 *   x ≥ 0:  x · (1 − ½·erfc(x/√2))        x < 0:  x · ½·erfc(−x/√2). */
AVX512_INLINE __m512 gelu16(__m512 x) {
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), erfc16(z));
    __mmask16 negative = _mm512_movepi32_mask(_mm512_castps_si512(x)); /* sign bits */
    __m512 phi = _mm512_mask_blend_ps(negative, _mm512_sub_ps(_mm512_set1_ps(1.0f), h), h);
    return _mm512_mul_ps(x, phi);
}

AVX512_INLINE __m512 activate16(__m512 v, m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return quickgelu16(v);
    case M2K_ACT_GELU: return gelu16(v);
    default: return v;
    }
}

/* ---- kernels -------------------------------------------------------------------------- */

AVX512_KERNEL
void m2k_avx512_bias_act(float *c, long ldc, int m, int n, const float *bias,
                         m2k_activation act) {
    for (int i = 0; i < m; i++) {
        float *row = c + (long)i * ldc;
        for (long j = 0; j < n; j += LANES) {
            __mmask16 k = tail_mask(n - j < LANES ? n - j : LANES);
            __m512 v = _mm512_maskz_loadu_ps(k, row + j);
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + j));
            _mm512_mask_storeu_ps(row + j, k, activate16(v, act));
        }
    }
}

/* Three passes per row in fp32: a first mean m; the deviations d = x − m, whose sum
 * corrects m for the rounding of pass one (Chan, Golub & LeVeque's corrected two-pass
 * algorithm): var = Σd²/n − (Σd/n)², mean = m + Σd/n; then the normalisation, with the
 * mean kept as the pair (m, shift) so that |mean| ≫ std costs no accuracy: x − m is exact
 * for x near m, and (x − m) − shift never sees m + shift rounded to a float. */
AVX512_KERNEL
void m2k_avx512_layernorm(const float *x, float *y, const float *gamma, const float *beta,
                          long rows, long cols, long ldx, long ldy, float eps) {
    if (cols <= 0) return;
    const long tail = cols % LANES, body = cols - tail;
    const __mmask16 kt = tail_mask(tail);
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;

        /* Both sums start from the partial last vector, whose lanes past the row the
         * zero-masked load (and subtract) leave at 0, then take the full vectors. */
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

        for (long j = 0; j < cols; j += LANES) {
            __mmask16 k = j < body ? (__mmask16)0xffff : kt;
            d = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), vm), vshift);
            __m512 v = _mm512_fmadd_ps(_mm512_mul_ps(d, inv), _mm512_maskz_loadu_ps(k, gamma + j),
                                       _mm512_maskz_loadu_ps(k, beta + j));
            _mm512_mask_storeu_ps(yr + j, k, v);
        }
    }
}

/* Per row: the max of scale·x over the valid prefix, e^(scale·x − max) in place with their
 * sum, a multiply by 1/sum, zeros after the prefix. scale·x is rounded before the max is
 * subtracted, as in the reference, so the largest term is exactly e^0 = 1. */
AVX512_KERNEL
void m2k_avx512_softmax(float *x, long rows, long cols, long ld, float scale, int causal,
                        long causal_offset) {
    const __m512 vscale = _mm512_set1_ps(scale);
    for (long r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        long valid = causal ? r + causal_offset + 1 : cols;
        if (valid > cols) valid = cols;
        if (valid < 0) valid = 0;
        const long tail = valid % LANES, body = valid - tail;
        const __mmask16 kt = tail_mask(tail);

        if (valid > 0) {
            /* Tail lanes past the prefix keep -inf (max) and 0 (sum) through masked ops. */
            __m512 vmax = _mm512_set1_ps(-INFINITY);
            for (long j = 0; j < body; j += LANES)
                vmax = _mm512_max_ps(vmax, _mm512_mul_ps(_mm512_loadu_ps(xr + j), vscale));
            vmax = _mm512_mask_max_ps(vmax, kt, vmax,
                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(kt, xr + body), vscale));
            const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));

            __m512 vsum = _mm512_setzero_ps();
            for (long j = 0; j < body; j += LANES) {
                __m512 e = exp16(
                    _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(xr + j), vscale), mx));
                _mm512_storeu_ps(xr + j, e);
                vsum = _mm512_add_ps(vsum, e);
            }
            if (tail) {
                __m512 e = exp16(
                    _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(kt, xr + body), vscale), mx));
                _mm512_mask_storeu_ps(xr + body, kt, e);
                vsum = _mm512_mask_add_ps(vsum, kt, vsum, e);
            }
            const __m512 inv = _mm512_set1_ps((float)(1.0 / (double)_mm512_reduce_add_ps(vsum)));
            for (long j = 0; j < valid; j += LANES) {
                __mmask16 k = j < body ? (__mmask16)0xffff : kt;
                __m512 e = _mm512_maskz_loadu_ps(k, xr + j);
                _mm512_mask_storeu_ps(xr + j, k, _mm512_mul_ps(e, inv));
            }
        }

        /* Masked-out columns: zero from `valid`, which need not be vector aligned. */
        for (long j = valid; j < cols; j += LANES)
            _mm512_mask_storeu_ps(xr + j, tail_mask(cols - j < LANES ? cols - j : LANES),
                                  _mm512_setzero_ps());
    }
}

AVX512_KERNEL
void m2k_avx512_quickgelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i += LANES) {
        __mmask16 k = tail_mask(n - i < LANES ? (long)(n - i) : LANES);
        _mm512_mask_storeu_ps(x + i, k, quickgelu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512_KERNEL
void m2k_avx512_gelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i += LANES) {
        __mmask16 k = tail_mask(n - i < LANES ? (long)(n - i) : LANES);
        _mm512_mask_storeu_ps(x + i, k, gelu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512_KERNEL
void m2k_avx512_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i += LANES) {
        __mmask16 k = tail_mask(n - i < LANES ? (long)(n - i) : LANES);
        __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, y + i), _mm512_maskz_loadu_ps(k, x + i));
        _mm512_mask_storeu_ps(y + i, k, v);
    }
}
#endif
