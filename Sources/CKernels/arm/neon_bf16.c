/* bf16 → fp32 for the bf16-weight GEMM (m2k_sgemm_bf16b): a bf16 value is the top half of
 * an fp32, so widening is a widening 16-bit left shift (ushll / ushll2 by 16), exact for
 * every pattern; 8 lanes per step. A tail shorter than a vector goes through a zeroed
 * buffer, so every element takes the same instruction whatever its position. */
#if defined(__aarch64__)
#include "neon_kernels.h"
#include <arm_neon.h>
#include <string.h>

static inline void widen8(const uint16_t *src, float *dst) {
    uint16x8_t b = vld1q_u16(src);
    vst1q_f32(dst, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(b), 16)));
    vst1q_f32(dst + 4, vreinterpretq_f32_u32(vshll_high_n_u16(b, 16)));
}

void m2k_neon_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
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
#endif
