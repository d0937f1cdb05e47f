/* NEON fp32 micro-kernel: an 8 × 12 tile of C held in 24 q registers (row i in three
 * registers of four columns). Per k step, two loads bring the 8 values of the A column and
 * three the 12 values of the B row; each row then takes three fused multiply-adds by one
 * lane of A (vfmaq_laneq_f32). 24 accumulators + 5 operands leave 3 of the 32 registers. */
#if defined(__aarch64__)
#include "neon_kernels.h"
#include <arm_neon.h>

/* Lanes must be constants, so the rows are spelled out rather than looped over. */
#define ROW_INIT(i)                                                                          \
    float32x4_t c##i##_0 = load_c ? vld1q_f32(c + (i) * ldc) : vdupq_n_f32(0.0f);           \
    float32x4_t c##i##_1 = load_c ? vld1q_f32(c + (i) * ldc + 4) : vdupq_n_f32(0.0f);       \
    float32x4_t c##i##_2 = load_c ? vld1q_f32(c + (i) * ldc + 8) : vdupq_n_f32(0.0f)

#define ROW_FMA(i, a, lane)                                                                  \
    c##i##_0 = vfmaq_laneq_f32(c##i##_0, b0, a, lane);                                       \
    c##i##_1 = vfmaq_laneq_f32(c##i##_1, b1, a, lane);                                       \
    c##i##_2 = vfmaq_laneq_f32(c##i##_2, b2, a, lane)

#define ROW_STORE(i)                                                                         \
    vst1q_f32(c + (i) * ldc, c##i##_0);                                                      \
    vst1q_f32(c + (i) * ldc + 4, c##i##_1);                                                  \
    vst1q_f32(c + (i) * ldc + 8, c##i##_2)

void m2k_neon_sgemm_micro(long kc, const float *ap, const float *bp, float *c, long ldc,
                          int load_c) {
    ROW_INIT(0); ROW_INIT(1); ROW_INIT(2); ROW_INIT(3);
    ROW_INIT(4); ROW_INIT(5); ROW_INIT(6); ROW_INIT(7);
    for (long p = 0; p < kc; p++) {
        float32x4_t a_lo = vld1q_f32(ap), a_hi = vld1q_f32(ap + 4); /* rows 0–3, 4–7 */
        float32x4_t b0 = vld1q_f32(bp), b1 = vld1q_f32(bp + 4), b2 = vld1q_f32(bp + 8);
        ROW_FMA(0, a_lo, 0); ROW_FMA(1, a_lo, 1); ROW_FMA(2, a_lo, 2); ROW_FMA(3, a_lo, 3);
        ROW_FMA(4, a_hi, 0); ROW_FMA(5, a_hi, 1); ROW_FMA(6, a_hi, 2); ROW_FMA(7, a_hi, 3);
        ap += M2K_NEON_MR;
        bp += M2K_NEON_NR;
    }
    ROW_STORE(0); ROW_STORE(1); ROW_STORE(2); ROW_STORE(3);
    ROW_STORE(4); ROW_STORE(5); ROW_STORE(6); ROW_STORE(7);
}
#endif
