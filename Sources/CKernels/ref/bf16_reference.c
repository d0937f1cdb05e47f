/* bf16 rounding, the widening oracle (the bf16_to_f32 of every table must match it bit for
 * bit), and the bf16 GEMM oracle: W and x rounded to bf16 (nearest, ties to even),
 * the exact products summed in double, straightforward loops. */
#include "kernels.h"
#include <math.h>
#include <string.h>

uint16_t m2k_bf16_from_float(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    /* Adding 0x7fff plus the kept lsb carries into the kept half exactly when the dropped
     * half is above one half, or equal to it with an odd kept half. */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float m2k_bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

void m2k_ref_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = m2k_bf16_to_float(src[i]);
}

static float round_bf16(float v) { return m2k_bf16_to_float(m2k_bf16_from_float(v)); }

static float activate(float x, m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return x / (1.0f + expf(-1.702f * x));
    case M2K_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default: return x;
    }
}

void m2k_ref_bf16_gemm(long m, long n, long kdim, const float *x, long lda, const float *w,
                       float *c, long ldc, const float *bias, m2k_activation act,
                       int accumulate) {
    for (long i = 0; i < m; i++) {
        for (long j = 0; j < n; j++) {
            double sum = 0;
            for (long p = 0; p < kdim; p++)
                sum += (double)round_bf16(x[i * lda + p]) * round_bf16(w[j * kdim + p]);
            float v = (float)sum + (bias ? bias[j] : 0.0f);
            if (accumulate) c[i * ldc + j] += v;
            else c[i * ldc + j] = activate(v, act);
        }
    }
}
