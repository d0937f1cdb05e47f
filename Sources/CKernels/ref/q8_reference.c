/* int8 GEMM: the scalar oracle (straightforward loops on unpacked Wq, 64-bit sums) and the
 * portable variant's micro-kernel, which every table can fall back to. The arithmetic is
 * the one kernels.h's int8 section defines; each float step is its own statement so that no
 * compiler fuses the dequantization into an FMA and the result stays the reference's. */
#include "kernels.h"
#include <math.h>
#include <string.h>

static float activate(float x, m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return x / (1.0f + expf(-1.702f * x));
    case M2K_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default: return x;
    }
}

/* scale = max |v| / 127; q[k] = round(v[k] / scale), ties to even; an all-zero row has
 * scale 0 and q = 0. */
static float quantize_symmetric(const float *v, long count, int8_t *q) {
    float max_abs = 0.0f;
    for (long k = 0; k < count; k++)
        if (fabsf(v[k]) > max_abs) max_abs = fabsf(v[k]);
    float scale = max_abs / 127.0f;
    for (long k = 0; k < count; k++)
        q[k] = scale > 0.0f ? (int8_t)lrintf(v[k] / scale) : 0;
    return scale;
}

void m2k_q8_quantize_weights(const float *w, long n, long kdim, int8_t *wq, float *w_scale) {
    for (long j = 0; j < n; j++) w_scale[j] = quantize_symmetric(w + j * kdim, kdim, wq + j * kdim);
}

void m2k_ref_q8_gemm(long m, long n, long kdim, const float *x, long lda, const int8_t *wq,
                     const float *w_scale, float *c, long ldc, const float *bias,
                     m2k_activation act, int accumulate) {
    int8_t xq[kdim > 0 ? kdim : 1];
    for (long i = 0; i < m; i++) {
        float x_scale = quantize_symmetric(x + i * lda, kdim, xq);
        for (long j = 0; j < n; j++) {
            int64_t sum = 0;
            for (long k = 0; k < kdim; k++) sum += (int64_t)xq[k] * wq[j * kdim + k];
            float scale = x_scale * w_scale[j];
            float v = scale * (float)sum;
            v += bias ? bias[j] : 0.0f;
            if (accumulate) c[i * ldc + j] += v;
            else c[i * ldc + j] = activate(v, act);
        }
    }
}

/* ---- the portable variant: 4 × 8 tiles, A in place as s8, groups of 4 ----------------- */

enum { SCALAR_Q8_MR = 4, SCALAR_Q8_NR = 8, SCALAR_Q8_KGROUP = 4 };

static int scalar_q8_runs(void) { return 1; }

static void scalar_q8_quantize(const float *x, long kdim, long kpad, int a_offset, uint8_t *q,
                               float *scale, const float *next) {
    (void)next;
    *scale = quantize_symmetric(x, kdim, (int8_t *)q);
    for (long k = 0; k < kdim; k++) q[k] = (uint8_t)(q[k] + a_offset);
    memset(q + kdim, a_offset, (size_t)(kpad - kdim));
}

static void scalar_q8_micro(long groups, const void *a, long lda, const int8_t *b,
                            const int32_t *b_offset, const float *a_scale, const float *w_scale,
                            const float *bias, float *c, long ldc, int accumulate) {
    const int8_t *ap = a;
    int32_t acc[SCALAR_Q8_MR][SCALAR_Q8_NR] = {{0}};
    for (long g = 0; g < groups; g++) {
        for (int i = 0; i < SCALAR_Q8_MR; i++) {
            const int8_t *ai = ap + i * lda + g * SCALAR_Q8_KGROUP;
            for (int j = 0; j < SCALAR_Q8_NR; j++) {
                const int8_t *bj = b + j * SCALAR_Q8_KGROUP;
                acc[i][j] += ai[0] * bj[0] + ai[1] * bj[1] + ai[2] * bj[2] + ai[3] * bj[3];
            }
        }
        b += SCALAR_Q8_NR * SCALAR_Q8_KGROUP;
    }
    for (int i = 0; i < SCALAR_Q8_MR; i++) {
        for (int j = 0; j < SCALAR_Q8_NR; j++) {
            float scale = a_scale[i] * w_scale[j];
            float v = scale * (float)(acc[i][j] + b_offset[j]);
            if (bias) v += bias[j];
            if (accumulate) c[i * ldc + j] += v;
            else c[i * ldc + j] = v;
        }
    }
}

const m2k_q8_kernel m2k_q8_scalar = {
    .name = "scalar",
    .runs = scalar_q8_runs,
    .mr = SCALAR_Q8_MR,
    .nr = SCALAR_Q8_NR,
    .kgroup = SCALAR_Q8_KGROUP,
    .a_offset = 0,
    .a_bytes = 1,
    .a_panels = 0,
    .quantize = scalar_q8_quantize,
    .micro = scalar_q8_micro,
};
