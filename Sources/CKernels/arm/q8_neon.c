/* NEON int8 micro-kernels. A comes packed (8 or 6 rows × 4 or 8 k per group, s8) so that
 * one q register holds four rows' groups (two rows' for smmla); W panels hold 4 (8) k per
 * column as on x86.
 *   neon-i8mm 8 × 12 tile of 2 × 2 blocks, smmla on groups of 8 k: half the instructions of
 *             sdot for the same work. Needs FEAT_I8MM (Armv8.6, HWCAP2_I8MM).
 *   neon-dot  8 × 12 tile, 24 int32x4 accumulators: per group two A and three W registers,
 *             and each row takes three sdot by one 32-bit lane of A (vdotq_laneq_s32), as
 *             neon_gemm.c's fp32 tile takes vfmaq_laneq_f32. Needs FEAT_DotProd (Armv8.2+,
 *             HWCAP_ASIMDDP), enabled for this function only.
 *   neon      6 × 8 tile for Armv8.0 cores: each row's four bytes, duplicated, multiply two
 *             columns' at once into 16 bits (vmull_s8, exact), and vpadalq_s16 adds the
 *             products in pairs into int32 lanes (two partial sums per column, folded by
 *             vpaddq at the end). 24 accumulators.
 * Both dequantize in the store as m2k_ref_q8_gemm does. */
#if defined(__aarch64__)
#include "kernels.h"
#include <arm_neon.h>
#include <float.h>
#include <math.h>
#include <string.h>

enum { MM_MR = 8, MM_NR = 12, DOT_MR = 8, DOT_NR = 12, WIDE_MR = 6, WIDE_NR = 8 };

static int mmla_runs(void) { return m2k_cpu()->i8mm; }
static int dot_runs(void) { return m2k_cpu()->asimddp; }
static int neon_runs(void) { return m2k_cpu()->neon; }

static inline int32_t load32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Out of line, so that the compiler cannot hoist the division into every vector. */
__attribute__((noinline, cold))
static float32x4_t divide4(float32x4_t v, float32x4_t s) { return vrndnq_f32(vdivq_f32(v, s)); }

/* One row of x → xq + a_offset and its scale; x · (1/s) stands in for x / s where it
 * provably rounds the same way (see quantize_avx512 in x86/q8_avx512.c). */
static void quantize_neon(const float *x, long kdim, long kpad, int a_offset, uint8_t *q,
                          float *scale_out, const float *next) {
    float32x4_t m0 = vdupq_n_f32(0.0f), m1 = vdupq_n_f32(0.0f);
    long k = 0;
    for (; k + 8 <= kdim; k += 8) {
        m0 = vmaxq_f32(m0, vabsq_f32(vld1q_f32(x + k)));
        m1 = vmaxq_f32(m1, vabsq_f32(vld1q_f32(x + k + 4)));
    }
    float max_abs = vmaxvq_f32(vmaxq_f32(m0, m1));
    for (; k < kdim; k++) max_abs = fabsf(x[k]) > max_abs ? fabsf(x[k]) : max_abs;
    float scale = max_abs / 127.0f;
    *scale_out = scale;
    if (!(scale > 0.0f)) {
        memset(q, a_offset, (size_t)kpad);
        return;
    }
    const int divide_all = scale < FLT_MIN;
    const float32x4_t s = vdupq_n_f32(scale), inv = vdupq_n_f32(1.0f / scale);
    const float32x4_t near_tie = vdupq_n_f32(0.5f - 0x1p-14f);
    const int8x16_t flip = vdupq_n_s8(a_offset == 128 ? (int8_t)-128 : 0);
    k = 0;
    for (; k + 16 <= kdim; k += 16) {
        if (next) __builtin_prefetch(next + k); /* a 64-byte line */
        int32x4_t qi[4];
        for (int u = 0; u < 4; u++) {
            float32x4_t v = vld1q_f32(x + k + 4 * u);
            float32x4_t y = vmulq_f32(v, inv);
            float32x4_t r = vrndnq_f32(y);
            uint32x4_t tie = vcgeq_f32(vabsq_f32(vsubq_f32(y, r)), near_tie);
            if (divide_all || vmaxvq_u32(tie)) r = divide4(v, s);
            qi[u] = vcvtq_s32_f32(r);
        }
        int16x8_t lo = vcombine_s16(vmovn_s32(qi[0]), vmovn_s32(qi[1]));
        int16x8_t hi = vcombine_s16(vmovn_s32(qi[2]), vmovn_s32(qi[3]));
        int8x16_t b = veorq_s8(vcombine_s8(vmovn_s16(lo), vmovn_s16(hi)), flip);
        vst1q_u8(q + k, vreinterpretq_u8_s8(b));
    }
    for (; k < kdim; k++) q[k] = (uint8_t)((int)lrintf(x[k] / scale) + a_offset);
    memset(q + kdim, a_offset, (size_t)(kpad - kdim));
}

/* Four columns of C: a_scale · w_scale · (float)(sum + b_offset) + bias. */
static inline void store4(int32x4_t sum, float a_scale, const float *w_scale,
                          const int32_t *b_offset, const float *bias, float *c, int accumulate) {
    float32x4_t scale = vmulq_f32(vdupq_n_f32(a_scale), vld1q_f32(w_scale));
    float32x4_t v = vmulq_f32(scale, vcvtq_f32_s32(vaddq_s32(sum, vld1q_s32(b_offset))));
    if (bias) v = vaddq_f32(v, vld1q_f32(bias));
    if (accumulate) v = vaddq_f32(vld1q_f32(c), v);
    vst1q_f32(c, v);
}

/* ---- neon-dot -------------------------------------------------------------------------- */

/* Lanes must be constants, so the rows are spelled out (as in neon_gemm.c). */
#define DOT_INIT(i) int32x4_t c##i##_0 = vdupq_n_s32(0), c##i##_1 = c##i##_0, c##i##_2 = c##i##_0

#define DOT_ROW(i, a, lane)                                                                  \
    c##i##_0 = vdotq_laneq_s32(c##i##_0, b0, a, lane);                                       \
    c##i##_1 = vdotq_laneq_s32(c##i##_1, b1, a, lane);                                       \
    c##i##_2 = vdotq_laneq_s32(c##i##_2, b2, a, lane)

#define DOT_STORE(i)                                                                         \
    store4(c##i##_0, a_scale[i], w_scale, b_offset, bias, c + (i) * ldc, accumulate);       \
    store4(c##i##_1, a_scale[i], w_scale + 4, b_offset + 4, bias ? bias + 4 : NULL,          \
           c + (i) * ldc + 4, accumulate);                                                   \
    store4(c##i##_2, a_scale[i], w_scale + 8, b_offset + 8, bias ? bias + 8 : NULL,          \
           c + (i) * ldc + 8, accumulate)

/* GCC 12 inlines its sdot intrinsics only into an Armv8.2 function ("+dotprod" alone is
 * refused); clang takes the same spelling. */
__attribute__((target("arch=armv8.2-a+dotprod")))
static void micro_dot(long groups, const void *a, long lda, const int8_t *b,
                      const int32_t *b_offset, const float *a_scale, const float *w_scale,
                      const float *bias, float *c, long ldc, int accumulate) {
    (void)lda; /* packed A */
    const int8_t *ap = a;
    DOT_INIT(0); DOT_INIT(1); DOT_INIT(2); DOT_INIT(3);
    DOT_INIT(4); DOT_INIT(5); DOT_INIT(6); DOT_INIT(7);
    for (long g = 0; g < groups; g++) {
        int8x16_t a_lo = vld1q_s8(ap), a_hi = vld1q_s8(ap + 16); /* rows 0–3, 4–7 */
        int8x16_t b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16), b2 = vld1q_s8(b + 32);
        DOT_ROW(0, a_lo, 0); DOT_ROW(1, a_lo, 1); DOT_ROW(2, a_lo, 2); DOT_ROW(3, a_lo, 3);
        DOT_ROW(4, a_hi, 0); DOT_ROW(5, a_hi, 1); DOT_ROW(6, a_hi, 2); DOT_ROW(7, a_hi, 3);
        ap += 4 * DOT_MR;
        b += 4 * DOT_NR;
    }
    DOT_STORE(0); DOT_STORE(1); DOT_STORE(2); DOT_STORE(3);
    DOT_STORE(4); DOT_STORE(5); DOT_STORE(6); DOT_STORE(7);
}

/* ---- neon-i8mm ------------------------------------------------------------------------- */

/* smmla multiplies a 2 × 8 block of A by an 8 × 2 block of W into a 2 × 2 block of C. With
 * groups of eight k, both packings already hold those blocks: rows 2p, 2p + 1 of a group are
 * 16 consecutive bytes of the A panel, columns 2q, 2q + 1 16 of the W panel. The 8 × 12 tile
 * is 4 × 6 such blocks in 24 accumulators; A takes 4 registers, W one pair at a time. */
#define MM_STORE_ROWS(p)                                                                     \
    do {                                                                                     \
        for (int q = 0; q < MM_NR / 4; q++) {                                                \
            int64x2_t lo = vreinterpretq_s64_s32(acc[p][2 * q]);                             \
            int64x2_t hi = vreinterpretq_s64_s32(acc[p][2 * q + 1]);                         \
            store4(vreinterpretq_s32_s64(vzip1q_s64(lo, hi)), a_scale[2 * (p)],              \
                   w_scale + 4 * q, b_offset + 4 * q, bias ? bias + 4 * q : NULL,            \
                   c + 2 * (p) * ldc + 4 * q, accumulate);                                    \
            store4(vreinterpretq_s32_s64(vzip2q_s64(lo, hi)), a_scale[2 * (p) + 1],          \
                   w_scale + 4 * q, b_offset + 4 * q, bias ? bias + 4 * q : NULL,            \
                   c + (2 * (p) + 1) * ldc + 4 * q, accumulate);                              \
        }                                                                                    \
    } while (0)

__attribute__((target("arch=armv8.2-a+i8mm")))
static void micro_mmla(long groups, const void *a, long lda, const int8_t *b,
                       const int32_t *b_offset, const float *a_scale, const float *w_scale,
                       const float *bias, float *c, long ldc, int accumulate) {
    (void)lda; /* packed A */
    const int8_t *ap = a;
    int32x4_t acc[MM_MR / 2][MM_NR / 2]; /* (row pair, column pair): r0c0 r0c1 r1c0 r1c1 */
    for (int p = 0; p < MM_MR / 2; p++)
        for (int q = 0; q < MM_NR / 2; q++) acc[p][q] = vdupq_n_s32(0);
    for (long g = 0; g < groups; g++) {
        int8x16_t a0 = vld1q_s8(ap), a1 = vld1q_s8(ap + 16);
        int8x16_t a2 = vld1q_s8(ap + 32), a3 = vld1q_s8(ap + 48);
        for (int q = 0; q < MM_NR / 2; q++) {
            int8x16_t bq = vld1q_s8(b + 16 * q);
            acc[0][q] = vmmlaq_s32(acc[0][q], a0, bq);
            acc[1][q] = vmmlaq_s32(acc[1][q], a1, bq);
            acc[2][q] = vmmlaq_s32(acc[2][q], a2, bq);
            acc[3][q] = vmmlaq_s32(acc[3][q], a3, bq);
        }
        ap += 8 * MM_MR;
        b += 8 * MM_NR;
    }
    MM_STORE_ROWS(0);
    MM_STORE_ROWS(1);
    MM_STORE_ROWS(2);
    MM_STORE_ROWS(3);
}

/* ---- neon (Armv8.0) --------------------------------------------------------------------- */

static void micro_widen(long groups, const void *a, long lda, const int8_t *b,
                        const int32_t *b_offset, const float *a_scale, const float *w_scale,
                        const float *bias, float *c, long ldc, int accumulate) {
    (void)lda; /* packed A */
    const int8_t *ap = a;
    /* acc[i][p]: columns 2p and 2p + 1 of row i, lanes (col, k 0–1) (col, k 2–3) ×2. */
    int32x4_t acc[WIDE_MR][WIDE_NR / 2];
    for (int i = 0; i < WIDE_MR; i++)
        for (int p = 0; p < WIDE_NR / 2; p++) acc[i][p] = vdupq_n_s32(0);
    for (long g = 0; g < groups; g++) {
        int8x16_t b01 = vld1q_s8(b), b23 = vld1q_s8(b + 16); /* columns 0–3, 4–7 */
        for (int i = 0; i < WIDE_MR; i++) {
            int8x8_t x = vreinterpret_s8_s32(vdup_n_s32(load32(ap + 4 * i)));
            acc[i][0] = vpadalq_s16(acc[i][0], vmull_s8(vget_low_s8(b01), x));
            acc[i][1] = vpadalq_s16(acc[i][1], vmull_s8(vget_high_s8(b01), x));
            acc[i][2] = vpadalq_s16(acc[i][2], vmull_s8(vget_low_s8(b23), x));
            acc[i][3] = vpadalq_s16(acc[i][3], vmull_s8(vget_high_s8(b23), x));
        }
        ap += 4 * WIDE_MR;
        b += 4 * WIDE_NR;
    }
    for (int i = 0; i < WIDE_MR; i++) {
        store4(vpaddq_s32(acc[i][0], acc[i][1]), a_scale[i], w_scale, b_offset, bias,
               c + i * ldc, accumulate);
        store4(vpaddq_s32(acc[i][2], acc[i][3]), a_scale[i], w_scale + 4, b_offset + 4,
               bias ? bias + 4 : NULL, c + i * ldc + 4, accumulate);
    }
}

const m2k_q8_kernel m2k_q8_neon_i8mm = {
    .name = "neon-i8mm",
    .runs = mmla_runs,
    .mr = MM_MR,
    .nr = MM_NR,
    .kgroup = 8,
    .a_offset = 0,
    .a_bytes = 1,
    .a_panels = 1,
    .quantize = quantize_neon,
    .micro = micro_mmla,
};

const m2k_q8_kernel m2k_q8_neon_dot = {
    .name = "neon-dot",
    .runs = dot_runs,
    .mr = DOT_MR,
    .nr = DOT_NR,
    .kgroup = 4,
    .a_offset = 0,
    .a_bytes = 1,
    .a_panels = 1,
    .quantize = quantize_neon,
    .micro = micro_dot,
};

const m2k_q8_kernel m2k_q8_neon = {
    .name = "neon",
    .runs = neon_runs,
    .mr = WIDE_MR,
    .nr = WIDE_NR,
    .kgroup = 4,
    .a_offset = 0,
    .a_bytes = 1,
    .a_panels = 1,
    .quantize = quantize_neon,
    .micro = micro_widen,
};
#endif
