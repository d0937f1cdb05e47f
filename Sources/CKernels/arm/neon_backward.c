/* NEON backward row kernels for training: LayerNorm backward and the activation derivatives
 * (QuickGELU, exact GELU), four floats per q register.
 *
 * Semantics are those of ref/backward_reference.c, the oracle the tests hold these to; the
 * forward arithmetic they differentiate (mean and variance, σ, Φ) is neon_vec.c's, with exp
 * and erfc from neon_math.h. A tail shorter than a vector goes through a 4-float buffer
 * (zero filled), so every element takes the same arithmetic path whatever its position. */
#if defined(__aarch64__)
#include "neon_kernels.h"
#include "neon_math.h"
#include <arm_neon.h>
#include <math.h>
#include <string.h>

/* Lanes [0, n) of p, n ≤ 4; the others read as 0. */
static inline float32x4_t load_part(const float *p, size_t n) {
    if (n == 4) return vld1q_f32(p);
    float buf[4] = {0, 0, 0, 0};
    memcpy(buf, p, n * sizeof(float));
    return vld1q_f32(buf);
}

static inline void store_part(float *p, float32x4_t v, size_t n) {
    if (n == 4) {
        vst1q_f32(p, v);
        return;
    }
    float buf[4];
    vst1q_f32(buf, v);
    memcpy(p, buf, n * sizeof(float));
}

/* ---- activation derivatives ----------------------------------------------------------- */

/* forward: y = x · σ(1.702 x), σ(u) = 1 / (1 + e^(−u))
 * ⇒ y' = σ · (1 + 1.702 x · (1 − σ)) = σ + 1.702 · (σ x) · (1 − σ). 1 − σ is taken as
 * e^(−u) · σ, which keeps its relative accuracy for large x (where 1 − σ would cancel and
 * 1.702 x magnifies the loss); where e^(−u) overflows, e · σ = inf · 0 is NaN and fminnm
 * (the number, when one operand is NaN) makes it 1. σ x is formed first so no finite x
 * overflows: σ = 0 where 1.702 x would. */
static inline float32x4_t quickgelu_grad4(float32x4_t x) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t e = m2k_neon_exp(vmulq_n_f32(x, -1.702f));
    float32x4_t s = vdivq_f32(one, vaddq_f32(one, e));
    float32x4_t rest = vminnmq_f32(vmulq_f32(e, s), one);
    return vfmaq_n_f32(s, vmulq_f32(vmulq_f32(s, x), rest), 1.702f);
}

/* forward: y = x · Φ(x) ⇒ y' = Φ(x) + x · φ(x), φ(x) = e^(−x²/2) / √(2π). Φ as gelu4 takes
 * it: ½ · (2 − erfc(|x|/√2)) for x ≥ 0, ½ · erfc(|x|/√2) for x < 0 (no cancellation). */
static inline float32x4_t gelu_grad4(float32x4_t x) {
    float32x4_t c = m2k_neon_erfc(vabsq_f32(vmulq_n_f32(x, 0.70710678118654752f)));
    float32x4_t w = vbslq_f32(vcltzq_f32(x), c, vsubq_f32(vdupq_n_f32(2.0f), c));
    float32x4_t cdf = vmulq_n_f32(w, 0.5f);
    float32x4_t pdf = vmulq_n_f32(m2k_neon_exp(vmulq_n_f32(vmulq_f32(x, x), -0.5f)),
                                  0.39894228040143268f);
    return vfmaq_f32(cdf, x, pdf);
}

/* dx[i] = dy[i] · act'(x[i]); each lane reads its dy before it writes dx, so dx may be dy. */
void m2k_neon_activation_backward(m2k_activation act, const float *x, const float *dy,
                                  float *dx, size_t n) {
    for (size_t i = 0; i < n; i += 4) {
        const size_t len = n - i < 4 ? n - i : 4;
        float32x4_t g = load_part(dy + i, len);
        switch (act) {
        case M2K_ACT_QUICKGELU: g = vmulq_f32(g, quickgelu_grad4(load_part(x + i, len))); break;
        case M2K_ACT_GELU: g = vmulq_f32(g, gelu_grad4(load_part(x + i, len))); break;
        default: break; /* identity: y' = 1 */
        }
        store_part(dx + i, g, len);
    }
}

/* ---- LayerNorm backward ---------------------------------------------------------------- */

/* Σ x[j] over a row in 16 float lanes, then the scalar rest: neon_vec.c's row_sum, so the
 * first mean is the forward's. */
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

/* Σ d and Σ d² with d = x[j] − shift, in 8 + 8 float lanes: neon_vec.c's
 * row_shifted_moments. */
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

/* forward: x̂ = (x − μ) / σ, y = x̂ · γ + β, σ = sqrt(var + eps)
 * ⇒ dx̂ = dy · γ;  dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) / σ;  dγ += dy · x̂;  dβ += dy.
 * μ and var are recomputed as m2k_neon_layernorm computes them (shifted two-pass in fp32,
 * the mean kept as the pair (m0, shift)), so x̂ is the forward's x̂. Tail lanes load dy as 0,
 * which zeroes their dx̂, dx̂ · x̂ and dy · x̂. */
void m2k_neon_layernorm_backward(const float *x, long ldx, const float *dy, long lddy,
                                 const float *gamma, float *dx, long lddx, float *dgamma,
                                 float *dbeta, long rows, long cols, float eps, int accumulate) {
    if (cols <= 0) return;
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx, *g = dy + r * lddy;
        const float m0 = row_sum(xr, cols) / (float)cols;
        float sum_d, sum_dd;
        row_shifted_moments(xr, cols, m0, &sum_d, &sum_dd);
        const float shift = sum_d / (float)cols;
        const float var = sum_dd / (float)cols - shift * shift;
        const float inv = 1.0f / sqrtf((var > 0.0f ? var : 0.0f) + eps);
        const float32x4_t vm0 = vdupq_n_f32(m0), vshift = vdupq_n_f32(shift);

        /* Σ dx̂ and Σ dx̂ · x̂; dγ += dy · x̂, dβ += dy */
        float32x4_t sg = vdupq_n_f32(0.0f), sgx = sg;
        for (long j = 0; j < cols; j += 4) {
            const size_t len = cols - j < 4 ? (size_t)(cols - j) : 4;
            float32x4_t xh =
                vmulq_n_f32(vsubq_f32(vsubq_f32(load_part(xr + j, len), vm0), vshift), inv);
            float32x4_t gj = load_part(g + j, len);
            float32x4_t dxh = vmulq_f32(gj, load_part(gamma + j, len));
            sg = vaddq_f32(sg, dxh);
            sgx = vfmaq_f32(sgx, dxh, xh);
            if (dgamma) store_part(dgamma + j, vfmaq_f32(load_part(dgamma + j, len), gj, xh), len);
            if (dbeta) store_part(dbeta + j, vaddq_f32(load_part(dbeta + j, len), gj), len);
        }
        if (!dx) continue;
        const float32x4_t mdx = vdupq_n_f32(vaddvq_f32(sg) / (float)cols);
        const float32x4_t mdxx = vdupq_n_f32(vaddvq_f32(sgx) / (float)cols);

        /* dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) / σ, written or added */
        float *out = dx + r * lddx;
        for (long j = 0; j < cols; j += 4) {
            const size_t len = cols - j < 4 ? (size_t)(cols - j) : 4;
            float32x4_t xh =
                vmulq_n_f32(vsubq_f32(vsubq_f32(load_part(xr + j, len), vm0), vshift), inv);
            float32x4_t dxh = vmulq_f32(load_part(g + j, len), load_part(gamma + j, len));
            float32x4_t v = vmulq_n_f32(vfmsq_f32(vsubq_f32(dxh, mdx), xh, mdxx), inv);
            if (accumulate) v = vaddq_f32(load_part(out + j, len), v);
            store_part(out + j, v, len);
        }
    }
}
#endif
