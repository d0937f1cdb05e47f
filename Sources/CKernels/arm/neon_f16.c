/* fp16 → fp32 with the Armv8-A conversions (fcvtl / fcvtl2): 8 lanes per step. A tail
 * shorter than a vector goes through a zeroed buffer, so every element takes the same
 * instruction whatever its position. */
#if defined(__aarch64__)
#include "neon_kernels.h"
#include <arm_neon.h>
#include <string.h>

static inline void widen8(const uint16_t *src, float *dst) {
    float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src));
    vst1q_f32(dst, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(dst + 4, vcvt_high_f32_f16(h));
}

void m2k_neon_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
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
