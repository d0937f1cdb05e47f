/* 16-bit weights → fp32 for the half-weight GEMMs (m2k_sgemm_f16b, m2k_sgemm_bf16b), 8 lanes
 * per step:
 *   fp16: the Armv8-A conversions (fcvtl / fcvtl2);
 *   bf16: the top half of an fp32, so a widening 16-bit left shift (ushll / ushll2 by 16),
 *         exact for every pattern.
 * A tail shorter than a vector goes through a zeroed buffer, so every element takes the same
 * instruction whatever its position. */
#if defined(__aarch64__)
#include "neon_kernels.h"
#include <arm_neon.h>
#include <string.h>

static inline void f16_widen8(const uint16_t *src, float *dst) {
    float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src));
    vst1q_f32(dst, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(dst + 4, vcvt_high_f32_f16(h));
}

static inline void bf16_widen8(const uint16_t *src, float *dst) {
    uint16x8_t b = vld1q_u16(src);
    vst1q_f32(dst, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(b), 16)));
    vst1q_f32(dst + 4, vreinterpretq_f32_u32(vshll_high_n_u16(b, 16)));
}

/* `widen8` is a constant at each call site, so the compiler inlines it into the loop. */
static inline void widen(const uint16_t *src, float *dst, size_t n,
                         void (*widen8)(const uint16_t *, float *)) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) widen8(src + i, dst + i);
    if (i < n) {
        uint16_t in[8] = {0};
        float out[8];
        memcpy(in, src + i, (n - i) * sizeof(uint16_t));
        widen8(in, out);
        memcpy(dst + i, out, (n - i) * sizeof(float));
    }
}

void m2k_neon_f16_to_f32(const uint16_t *src, float *dst, size_t n) { widen(src, dst, n, f16_widen8); }

void m2k_neon_bf16_to_f32(const uint16_t *src, float *dst, size_t n) { widen(src, dst, n, bf16_widen8); }
#endif
