/* NEON element-wise kernels: the GEMM epilogue (bias + activation), LayerNorm, softmax,
 * QuickGELU, GELU and add, each following its scalar reference in ref/reference.c. A tail
 * shorter than a vector goes through a 4-float buffer, so every element of a row takes the
 * same arithmetic path whatever its position. */
#if defined(__aarch64__)
#include "neon_kernels.h"
#include "neon_math.h"
#include <arm_neon.h>
#include <math.h>
#include <string.h>

static inline float32x4_t load_tail(const float *p, size_t n, float fill) {
    float buf[4] = {fill, fill, fill, fill};
    memcpy(buf, p, n * sizeof(float));
    return vld1q_f32(buf);
}

static inline void store_tail(float *p, float32x4_t v, size_t n) {
    float buf[4];
    vst1q_f32(buf, v);
    memcpy(p, buf, n * sizeof(float));
}

/* x · σ(1.702 x) = x / (1 + e^(−1.702 x)); e^… = +inf for very negative x gives −0. */
static inline float32x4_t quickgelu4(float32x4_t x) {
    float32x4_t e = m2k_neon_exp(vmulq_n_f32(x, -1.702f));
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
}

/* x · Φ(x) = x/2 · (1 + erf(x/√2)), with 1 + erf(x/√2) = 2 − erfc(|x|/√2) for x ≥ 0 and
 * erfc(|x|/√2) for x < 0: no cancellation in the negative tail. */
static inline float32x4_t gelu4(float32x4_t x) {
    float32x4_t c = m2k_neon_erfc(vabsq_f32(vmulq_n_f32(x, 0.70710678118654752f)));
    float32x4_t w = vbslq_f32(vcltzq_f32(x), c, vsubq_f32(vdupq_n_f32(2.0f), c));
    return vmulq_f32(vmulq_n_f32(x, 0.5f), w);
}

static inline float32x4_t activate4(float32x4_t x, m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return quickgelu4(x);
    case M2K_ACT_GELU: return gelu4(x);
    default: return x;
    }
}

void m2k_neon_bias_act(float *c, long ldc, int m, int n, const float *bias,
                       m2k_activation act) {
    for (int i = 0; i < m; i++) {
        float *row = c + i * ldc;
        int j = 0;
        for (; j + 4 <= n; j += 4) {
            float32x4_t v = vld1q_f32(row + j);
            if (bias) v = vaddq_f32(v, vld1q_f32(bias + j));
            vst1q_f32(row + j, activate4(v, act));
        }
        if (j < n) {
            size_t tail = (size_t)(n - j);
            float32x4_t v = load_tail(row + j, tail, 0.0f);
            if (bias) v = vaddq_f32(v, load_tail(bias + j, tail, 0.0f));
            store_tail(row + j, activate4(v, act), tail);
        }
    }
}

/* Σ x[j] over a row, in 16 float lanes. */
static float row_sum(const float *x, long n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        s0 = vaddq_f32(s0, vld1q_f32(x + j));
        s1 = vaddq_f32(s1, vld1q_f32(x + j + 4));
        s2 = vaddq_f32(s2, vld1q_f32(x + j + 8));
        s3 = vaddq_f32(s3, vld1q_f32(x + j + 12));
    }
    for (; j + 4 <= n; j += 4) s0 = vaddq_f32(s0, vld1q_f32(x + j));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; j < n; j++) sum += x[j];
    return sum;
}

/* Σ d and Σ d² with d = x[j] − shift, in 8 + 8 float lanes. */
static void row_shifted_moments(const float *x, long n, float shift, float *sum_d,
                                float *sum_dd) {
    float32x4_t vshift = vdupq_n_f32(shift);
    float32x4_t d0 = vdupq_n_f32(0.0f), d1 = d0, dd0 = d0, dd1 = d0;
    long j = 0;
    for (; j + 8 <= n; j += 8) {
        float32x4_t a = vsubq_f32(vld1q_f32(x + j), vshift);
        float32x4_t b = vsubq_f32(vld1q_f32(x + j + 4), vshift);
        d0 = vaddq_f32(d0, a);
        d1 = vaddq_f32(d1, b);
        dd0 = vfmaq_f32(dd0, a, a);
        dd1 = vfmaq_f32(dd1, b, b);
    }
    for (; j + 4 <= n; j += 4) {
        float32x4_t a = vsubq_f32(vld1q_f32(x + j), vshift);
        d0 = vaddq_f32(d0, a);
        dd0 = vfmaq_f32(dd0, a, a);
    }
    float s = vaddvq_f32(vaddq_f32(d0, d1)), ss = vaddvq_f32(vaddq_f32(dd0, dd1));
    for (; j < n; j++) {
        float a = x[j] - shift;
        s += a;
        ss += a * a;
    }
    *sum_d = s;
    *sum_dd = ss;
}

/* Float accumulation with the shifted two-pass correction: with d = x − m0 for a first
 * estimate m0 of the mean, mean = m0 + Σd/n and var = Σd²/n − (Σd/n)², which stays
 * accurate when the mean is large against the spread. The output keeps the pair
 * (m0, Σd/n) and centres as (x − m0) − Σd/n, so the mean is never rounded to one float. */
void m2k_neon_layernorm(const float *x, float *y, const float *gamma, const float *beta,
                        long rows, long cols, long ldx, long ldy, float eps) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        float m0 = row_sum(xr, cols) / (float)cols;
        float sum_d, sum_dd;
        row_shifted_moments(xr, cols, m0, &sum_d, &sum_dd);
        float shift = sum_d / (float)cols;
        float var = sum_dd / (float)cols - shift * shift;
        float inv = 1.0f / sqrtf((var > 0.0f ? var : 0.0f) + eps);
        float32x4_t vm0 = vdupq_n_f32(m0), vshift = vdupq_n_f32(shift);
        long j = 0;
        for (; j + 4 <= cols; j += 4) {
            float32x4_t d = vsubq_f32(vsubq_f32(vld1q_f32(xr + j), vm0), vshift);
            float32x4_t v = vmulq_f32(vmulq_n_f32(d, inv), vld1q_f32(gamma + j));
            vst1q_f32(yr + j, vaddq_f32(v, vld1q_f32(beta + j)));
        }
        for (; j < cols; j++) yr[j] = ((xr[j] - m0) - shift) * inv * gamma[j] + beta[j];
    }
}

void m2k_neon_softmax(float *x, long rows, long cols, long ld, float scale, int causal,
                      long causal_offset) {
    float32x4_t vscale = vdupq_n_f32(scale);
    for (long r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        long valid = causal ? r + causal_offset + 1 : cols;
        if (valid > cols) valid = cols;
        if (valid < 0) valid = 0;

        float32x4_t vmax = vdupq_n_f32(-INFINITY);
        long j = 0;
        for (; j + 4 <= valid; j += 4) vmax = vmaxq_f32(vmax, vmulq_f32(vld1q_f32(xr + j), vscale));
        float mx = vmaxvq_f32(vmax);
        for (; j < valid; j++) mx = fmaxf(mx, xr[j] * scale);

        /* e^(scale·x − max), as the reference rounds it: the product, then the difference. */
        float32x4_t vmx = vdupq_n_f32(mx), vsum = vdupq_n_f32(0.0f);
        for (j = 0; j + 4 <= valid; j += 4) {
            float32x4_t e = m2k_neon_exp(vsubq_f32(vmulq_f32(vld1q_f32(xr + j), vscale), vmx));
            vst1q_f32(xr + j, e);
            vsum = vaddq_f32(vsum, e);
        }
        float sum = vaddvq_f32(vsum);
        if (j < valid) {
            size_t tail = (size_t)(valid - j);
            float32x4_t v = load_tail(xr + j, tail, 0.0f);
            store_tail(xr + j, m2k_neon_exp(vsubq_f32(vmulq_f32(v, vscale), vmx)), tail);
            for (long t = j; t < valid; t++) sum += xr[t];
        }

        float32x4_t inv = vdupq_n_f32(1.0f / sum);
        for (j = 0; j + 4 <= valid; j += 4) vst1q_f32(xr + j, vmulq_f32(vld1q_f32(xr + j), inv));
        for (; j < valid; j++) xr[j] *= 1.0f / sum;
        for (j = valid; j < cols; j++) xr[j] = 0.0f;
    }
}

void m2k_neon_quickgelu(float *x, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, quickgelu4(vld1q_f32(x + i)));
    if (i < n) store_tail(x + i, quickgelu4(load_tail(x + i, n - i, 0.0f)), n - i);
}

void m2k_neon_gelu(float *x, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, gelu4(vld1q_f32(x + i)));
    if (i < n) store_tail(x + i, gelu4(load_tail(x + i, n - i, 0.0f)), n - i);
}

void m2k_neon_add(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
        vst1q_f32(y + i + 4, vaddq_f32(vld1q_f32(y + i + 4), vld1q_f32(x + i + 4)));
        vst1q_f32(y + i + 8, vaddq_f32(vld1q_f32(y + i + 8), vld1q_f32(x + i + 8)));
        vst1q_f32(y + i + 12, vaddq_f32(vld1q_f32(y + i + 12), vld1q_f32(x + i + 12)));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
    for (; i < n; i++) y[i] += x[i];
}
#endif
