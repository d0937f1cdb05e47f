/* AVX2 int8 micro-kernels, both reading A in place (row streams) from W panels in groups of
 * four k (the packing of the AVX-512 kernel, narrower panels):
 *   avx2-vnni  6 × 16 tile, 12 ymm accumulators, AVX-VNNI vpdpbusd (u8 xq + 128 × s8 Wq);
 *   avx2       6 × 8 tile for CPUs without it: A comes quantized to int16, each W column's
 *              four bytes are sign-extended to 16 bits, and vpmaddwd adds the products in
 *              pairs into int32 (no vpmaddubsw: its 16-bit sums saturate). Each accumulator
 *              holds two partial sums per column, folded by one vphaddd at the end.
 * Both dequantize in the store as the reference does (see q8_avx512.c). Only 16 ymm
 * registers: the tiles keep 12 accumulators, the W vectors and one broadcast. */
#if defined(__x86_64__)
#include "kernels.h"
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AVX2_TARGET "avx2,fma"
#define AVXVNNI_TARGET "avx2,fma,avxvnni"

enum { VNNI_MR = 6, VNNI_NR = 16, MADD_MR = 6, MADD_NR = 8 };

static int avx2_runs(void) { return m2k_cpu()->avx2; }
static int avx2_vnni_runs(void) { return m2k_cpu()->avx2 && m2k_cpu()->avxvnni; }

static inline int32_t load32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline int64_t load64(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Out of line, so that the compiler cannot hoist the division into every vector. */
__attribute__((target(AVX2_TARGET), noinline, cold))
static __m256 divide8(__m256 v, __m256 s) {
    return _mm256_round_ps(_mm256_div_ps(v, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* The scale of a row: max |x| / 127. */
__attribute__((target(AVX2_TARGET)))
static float row_scale(const float *x, long kdim) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    long k = 0;
    for (; k + 16 <= kdim; k += 16) {
        m0 = _mm256_max_ps(m0, _mm256_and_ps(abs_mask, _mm256_loadu_ps(x + k)));
        m1 = _mm256_max_ps(m1, _mm256_and_ps(abs_mask, _mm256_loadu_ps(x + k + 8)));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
    float max_abs = 0.0f;
    for (int i = 0; i < 8; i++) max_abs = lanes[i] > max_abs ? lanes[i] : max_abs;
    for (; k < kdim; k++) max_abs = fabsf(x[k]) > max_abs ? fabsf(x[k]) : max_abs;
    return max_abs / 127.0f;
}

/* round(x / s) for 8 values, as int32; x · (1/s) stands in for x / s where it provably
 * rounds the same way (see quantize_avx512 in q8_avx512.c). */
__attribute__((target(AVX2_TARGET), always_inline))
static inline __m256i round8(const float *x, __m256 inv, __m256 s, int divide) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 near_tie = _mm256_set1_ps(0.5f - 0x1p-14f);
    __m256 v = _mm256_loadu_ps(x);
    __m256 y = _mm256_mul_ps(v, inv);
    __m256 r = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 dist = _mm256_and_ps(abs_mask, _mm256_sub_ps(y, r));
    if (divide || _mm256_movemask_ps(_mm256_cmp_ps(dist, near_tie, _CMP_GE_OQ)))
        r = divide8(v, s);
    return _mm256_cvtps_epi32(r);
}

/* One row of x → xq + a_offset (bytes) and its scale. */
__attribute__((target(AVX2_TARGET)))
static void quantize_avx2(const float *x, long kdim, long kpad, int a_offset, uint8_t *q,
                          float *scale_out, const float *next) {
    float scale = row_scale(x, kdim);
    *scale_out = scale;
    if (!(scale > 0.0f)) {
        memset(q, a_offset, (size_t)kpad);
        return;
    }
    const int divide = scale < FLT_MIN;
    const __m256 s = _mm256_set1_ps(scale), inv = _mm256_set1_ps(1.0f / scale);
    const __m256i flip = _mm256_set1_epi8(a_offset == 128 ? (char)0x80 : 0);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    long k = 0;
    for (; k + 32 <= kdim; k += 32) {
        if (next) { /* two lines */
            _mm_prefetch((const char *)(next + k), _MM_HINT_T0);
            _mm_prefetch((const char *)(next + k + 16), _MM_HINT_T0);
        }
        __m256i q0 = round8(x + k, inv, s, divide), q1 = round8(x + k + 8, inv, s, divide);
        __m256i q2 = round8(x + k + 16, inv, s, divide), q3 = round8(x + k + 24, inv, s, divide);
        /* |q| ≤ 127: the saturating packs are exact; they interleave 128-bit lanes. */
        __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        w = _mm256_xor_si256(_mm256_permutevar8x32_epi32(w, order), flip);
        _mm256_storeu_si256((__m256i *)(q + k), w);
    }
    for (; k < kdim; k++) q[k] = (uint8_t)((int)lrintf(x[k] / scale) + a_offset);
    memset(q + kdim, a_offset, (size_t)(kpad - kdim));
}

/* The same as int16 (a_offset 0), for vpmaddwd: kpad elements of 2 bytes. */
__attribute__((target(AVX2_TARGET)))
static void quantize_avx2_wide(const float *x, long kdim, long kpad, int a_offset, uint8_t *q,
                               float *scale_out, const float *next) {
    (void)a_offset; /* 0 */
    int16_t *qw = (int16_t *)(void *)q;
    float scale = row_scale(x, kdim);
    *scale_out = scale;
    if (!(scale > 0.0f)) {
        memset(qw, 0, (size_t)kpad * sizeof *qw);
        return;
    }
    const int divide = scale < FLT_MIN;
    const __m256 s = _mm256_set1_ps(scale), inv = _mm256_set1_ps(1.0f / scale);
    long k = 0;
    for (; k + 16 <= kdim; k += 16) {
        if (next) _mm_prefetch((const char *)(next + k), _MM_HINT_T0);
        __m256i q0 = round8(x + k, inv, s, divide), q1 = round8(x + k + 8, inv, s, divide);
        __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
        _mm256_storeu_si256((__m256i *)(qw + k), w);
    }
    for (; k < kdim; k++) qw[k] = (int16_t)lrintf(x[k] / scale);
    memset(qw + kdim, 0, (size_t)(kpad - kdim) * sizeof *qw);
}

/* C tile from int32 sums of 8 columns: a_scale · w_scale · (float)(sum + b_offset) + bias. */
__attribute__((target(AVX2_TARGET), always_inline))
static inline void store8(__m256i sum, float a_scale, const float *w_scale,
                          const int32_t *b_offset, const float *bias, float *c, int accumulate) {
    __m256 scale = _mm256_mul_ps(_mm256_set1_ps(a_scale), _mm256_loadu_ps(w_scale));
    sum = _mm256_add_epi32(sum, _mm256_loadu_si256((const __m256i *)b_offset));
    __m256 v = _mm256_mul_ps(scale, _mm256_cvtepi32_ps(sum));
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
    if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(c), v);
    _mm256_storeu_ps(c, v);
}

__attribute__((target(AVXVNNI_TARGET)))
static void micro_avx2_vnni(long groups, const void *a, long lda, const int8_t *b,
                            const int32_t *b_offset, const float *a_scale, const float *w_scale,
                            const float *bias, float *c, long ldc, int accumulate) {
    const uint8_t *ap = a;
    __m256i acc0[VNNI_MR], acc1[VNNI_MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < VNNI_MR; i++) acc0[i] = acc1[i] = _mm256_setzero_si256();
    for (long g = 0; g < groups; g++) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 32));
#pragma clang loop unroll(full)
        for (int i = 0; i < VNNI_MR; i++) {
            __m256i x = _mm256_set1_epi32(load32(ap + i * lda));
            acc0[i] = _mm256_dpbusd_avx_epi32(acc0[i], x, b0);
            acc1[i] = _mm256_dpbusd_avx_epi32(acc1[i], x, b1);
        }
        ap += 4;
        b += 4 * VNNI_NR;
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < VNNI_MR; i++) {
        store8(acc0[i], a_scale[i], w_scale, b_offset, bias, c + i * ldc, accumulate);
        store8(acc1[i], a_scale[i], w_scale + 8, b_offset + 8, bias ? bias + 8 : NULL,
               c + i * ldc + 8, accumulate);
    }
}

__attribute__((target(AVX2_TARGET)))
static void micro_avx2_madd(long groups, const void *a, long lda, const int8_t *b,
                            const int32_t *b_offset, const float *a_scale, const float *w_scale,
                            const float *bias, float *c, long ldc, int accumulate) {
    const uint8_t *ap = a; /* int16 */
    /* acc0[i]: columns 0–3, acc1[i]: 4–7; lanes (column, k 0–1) and (column, k 2–3). */
    __m256i acc0[MADD_MR], acc1[MADD_MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < MADD_MR; i++) acc0[i] = acc1[i] = _mm256_setzero_si256();
    for (long g = 0; g < groups; g++) {
        __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b));
        __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 16)));
#pragma clang loop unroll(full)
        for (int i = 0; i < MADD_MR; i++) {
            __m256i x = _mm256_set1_epi64x(load64(ap + i * lda)); /* (a0 a1 a2 a3) × 4 */
            acc0[i] = _mm256_add_epi32(acc0[i], _mm256_madd_epi16(x, b0));
            acc1[i] = _mm256_add_epi32(acc1[i], _mm256_madd_epi16(x, b1));
        }
        ap += 4 * sizeof(int16_t);
        b += 4 * MADD_NR;
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < MADD_MR; i++) {
        /* hadd gives columns 0 1 4 5 2 3 6 7; the qword permute puts them in order. */
        __m256i sum = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc0[i], acc1[i]), 0xD8);
        store8(sum, a_scale[i], w_scale, b_offset, bias, c + i * ldc, accumulate);
    }
}

const m2k_q8_kernel m2k_q8_avx2_vnni = {
    .name = "avx2-vnni",
    .runs = avx2_vnni_runs,
    .mr = VNNI_MR,
    .nr = VNNI_NR,
    .kgroup = 4,
    .a_offset = 128,
    .a_bytes = 1,
    .a_panels = 0,
    .quantize = quantize_avx2,
    .micro = micro_avx2_vnni,
};

const m2k_q8_kernel m2k_q8_avx2 = {
    .name = "avx2",
    .runs = avx2_runs,
    .mr = MADD_MR,
    .nr = MADD_NR,
    .kgroup = 4,
    .a_offset = 0,
    .a_bytes = 2,
    .a_panels = 0,
    .quantize = quantize_avx2_wide,
    .micro = micro_avx2_madd,
};
#endif
