/* Vector exp and erfc over four fp32 lanes, for the NEON softmax, QuickGELU and GELU.
 * Static inline so that Tests/NEON measures these very functions against libm. */
#ifndef M2CLIP_NEON_MATH_H
#define M2CLIP_NEON_MATH_H
#if defined(__aarch64__)
#include <arm_neon.h>

/* e^x within a few ulp (Tests/NEON measures it), any input.
 * x = n·ln2 + r, |r| ≤ ln2/2, with ln2 split in two (Cody–Waite) so n·ln2_hi is exact;
 * e^r = 1 + r + r²·P(r), P the Cephes expf polynomial. 2^n is applied as two factors
 * 2^⌊n/2⌋ · 2^(n−⌊n/2⌋), each a normal float, so the last multiply alone rounds: results
 * past FLT_MAX become +inf and tiny ones underflow gradually to 0. Clamping x to
 * [−104, 89] first (e^−104 rounds to 0, e^89 to +inf) makes −inf give 0 and +inf give
 * +inf; NaN stays NaN. */
static inline float32x4_t m2k_neon_exp(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-104.0f)), vdupq_n_f32(89.0f));
    int32x4_t n = vcvtnq_s32_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t nf = vcvtq_f32_s32(n);
    float32x4_t r = vfmsq_f32(x, nf, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, nf, vdupq_n_f32(-2.12194440e-4f));

    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    float32x4_t er = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));

    int32x4_t n1 = vshrq_n_s32(n, 1), n2 = vsubq_s32(n, n1); /* both in [−75, 64] */
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(er, s1), s2);
}

/* erfc(z) for z ≥ 0 with a small relative error everywhere, tail included:
 * erfc(z) ≈ t·exp(−z² + P(t)), t = 1/(1 + z/2), P the degree-9 Chebyshev fit of
 * Numerical Recipes' erfcc (fractional error < 1.2e-7 in exact arithmetic). GELU needs the
 * relative accuracy: for x < 0, 1 + erf(x/√2) = erfc(|x|/√2), which 1 + erf would lose to
 * cancellation. The exponent −z² + P(t) reaches −110, where one float rounding alone would
 * cost 4e-6 of relative error, so it is carried as a float pair into exp. z is clamped at
 * 10.5, past which erfc rounds to 0 (and which keeps +inf from turning z² − z² into NaN). */
static inline float32x4_t m2k_neon_erfc(float32x4_t z) {
    z = vminq_f32(z, vdupq_n_f32(10.5f));
    const float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t t = vdivq_f32(one, vfmaq_n_f32(one, z, 0.5f));
    float32x4_t p = vdupq_n_f32(0.17087277f);
    p = vfmaq_f32(vdupq_n_f32(-0.82215223f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.48851587f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-1.13520398f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.27886807f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-0.18628806f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.09678418f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.37409196f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.00002368f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-1.26551223f), p, t);
    /* P − z² = hi + lo: z² = zz − zz_err exactly (fma residual), then 2Sum of P and −zz */
    float32x4_t zz = vmulq_f32(z, z), neg_zz = vnegq_f32(zz);
    float32x4_t zz_err = vfmsq_f32(zz, z, z);
    float32x4_t hi = vaddq_f32(p, neg_zz);
    float32x4_t p_part = vsubq_f32(hi, neg_zz);
    float32x4_t lo = vaddq_f32(vsubq_f32(p, p_part), vsubq_f32(neg_zz, vsubq_f32(hi, p_part)));
    lo = vaddq_f32(lo, zz_err);
    float32x4_t e = m2k_neon_exp(hi); /* e^(hi + lo) = e^hi · (1 + lo), |lo| ≤ 1 ulp of hi */
    return vmulq_f32(t, vfmaq_f32(e, e, lo));
}

#endif
#endif
