/* AVX-512 VNNI int8 micro-kernel: a 12 × 32 tile of int32 sums in 24 zmm accumulators. Per
 * group of four k: two 64-byte loads bring the W panel's 32 columns × 4 k (s8), and each of
 * the 12 rows broadcasts its 4 activation bytes (u8, xq + 128; a load-only vpbroadcastd) to
 * two vpdpbusd, which add the four u8 × s8 products of each column into its int32 lane. The
 * +128 comes back out as b_offset = −128 · Σ_k Wq in the store, where the sums also turn into
 * floats: a_scale · w_scale · (float)(Σ + b_offset) + bias, as the reference computes it.
 * A is read in place: 12 row streams, each 64-byte line serving 16 groups. On L1/L2-resident
 * panels the tile runs at the vpdpbusd peak (two a cycle). The AVX-512 row quantizer too. */
#if defined(__x86_64__)
#include "kernels.h"
#include <float.h>
#include <immintrin.h>
#include <string.h>

#define VNNI_MR 12
#define VNNI_NR 32

#define AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512dq"
#define VNNI_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"

static int vnni_runs(void) {
    const m2k_cpu_features *f = m2k_cpu();
    return f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512vnni;
}

/* Out of line, so that the compiler cannot hoist the division into every vector. */
__attribute__((target(AVX512_TARGET), noinline, cold))
static __m512 divide16(__m512 v, __m512 s, __m512 magic) {
    return _mm512_add_ps(_mm512_div_ps(v, s), magic);
}

/* 16 values of a row → xq + a_offset, as m2k_ref_q8_gemm rounds: q = round(x / s), ties to
 * even. x · (1/s) is within 2⁻¹⁵ of the float quotient x / s for |q| ≤ 127, so it rounds the
 * same way unless it lies that close to a half-integer; those vectors (about one in two
 * thousand on real data) and rows whose scale is too small for 1/s to be exact are divided.
 * Rounding adds 1.5 · 2²³ + a_offset, whose ulp is 1 (ties to even, as lrintf in the default
 * mode): the low byte of the sum's bits is then xq + a_offset, which vpmovdb keeps. */
__attribute__((target(AVX512_TARGET), always_inline))
static inline __m128i quantize16(__m512 v, __m512 inv, __m512 s, __m512 magic, int divide) {
    const __m512 near_tie = _mm512_set1_ps(0.5f - 0x1p-14f);
    __m512 y = _mm512_mul_ps(v, inv);
    __m512 t = _mm512_add_ps(y, magic);
    __m512 dist = _mm512_abs_ps(_mm512_sub_ps(y, _mm512_sub_ps(t, magic)));
    if (divide || _mm512_cmp_ps_mask(dist, near_tie, _CMP_GE_OQ))
        t = divide16(v, s, magic);
    return _mm512_cvtepi32_epi8(_mm512_castps_si512(t));
}

__attribute__((target(AVX512_TARGET)))
static void quantize_avx512(const float *x, long kdim, long kpad, int a_offset, uint8_t *q,
                            float *scale_out, const float *next) {
    __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
    long k = 0;
    for (; k + 32 <= kdim; k += 32) {
        m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
        m1 = _mm512_max_ps(m1, _mm512_abs_ps(_mm512_loadu_ps(x + k + 16)));
    }
    for (; k < kdim; k += 16) {
        __mmask16 t = kdim - k >= 16 ? 0xFFFF : (__mmask16)((1u << (kdim - k)) - 1);
        m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_maskz_loadu_ps(t, x + k)));
    }
    float scale = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1)) / 127.0f;
    *scale_out = scale;
    if (!(scale > 0.0f)) {
        memset(q, a_offset, (size_t)kpad);
        return;
    }
    const int divide = scale < FLT_MIN;
    const __m512 s = _mm512_set1_ps(scale), inv = _mm512_set1_ps(1.0f / scale);
    const __m512 magic = _mm512_set1_ps(12582912.0f + (float)a_offset);
    for (k = 0; k + 16 <= kdim; k += 16) {
        if (next) _mm_prefetch((const char *)(next + k), _MM_HINT_T0); /* a line a vector */
        _mm_storeu_si128((__m128i *)(q + k),
                         quantize16(_mm512_loadu_ps(x + k), inv, s, magic, divide));
    }
    if (k < kdim) {
        __mmask16 t = (__mmask16)((1u << (kdim - k)) - 1);
        __m128i tail = quantize16(_mm512_maskz_loadu_ps(t, x + k), inv, s, magic, divide);
        _mm_mask_storeu_epi8(q + k, t, tail);
    }
    memset(q + kdim, a_offset, (size_t)(kpad - kdim));
}

static inline int32_t load32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

__attribute__((target(VNNI_TARGET)))
static void micro_vnni(long groups, const void *a, long lda, const int8_t *b,
                       const int32_t *b_offset, const float *a_scale, const float *w_scale,
                       const float *bias, float *c, long ldc, int accumulate) {
    const uint8_t *ap = a;
    __m512i acc0[VNNI_MR], acc1[VNNI_MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < VNNI_MR; i++) {
        acc0[i] = acc1[i] = _mm512_setzero_si512();
        /* The C tile is far (a big C is in L3 or memory): fetch it while the sums run. */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
    for (long g = 0; g < groups; g++) {
        __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64);
#pragma clang loop unroll(full)
        for (int i = 0; i < VNNI_MR; i++) {
            __m512i x = _mm512_set1_epi32(load32(ap + i * lda));
            acc0[i] = _mm512_dpbusd_epi32(acc0[i], x, b0);
            acc1[i] = _mm512_dpbusd_epi32(acc1[i], x, b1);
        }
        ap += 4;
        b += 4 * VNNI_NR;
    }
    const __m512 ws0 = _mm512_loadu_ps(w_scale), ws1 = _mm512_loadu_ps(w_scale + 16);
    const __m512i off0 = _mm512_loadu_si512(b_offset), off1 = _mm512_loadu_si512(b_offset + 16);
    const __m512 bias0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 bias1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
#pragma clang loop unroll(full)
    for (int i = 0; i < VNNI_MR; i++) {
        __m512 xs = _mm512_set1_ps(a_scale[i]);
        __m512 v0 = _mm512_mul_ps(_mm512_mul_ps(xs, ws0),
                                  _mm512_cvtepi32_ps(_mm512_add_epi32(acc0[i], off0)));
        __m512 v1 = _mm512_mul_ps(_mm512_mul_ps(xs, ws1),
                                  _mm512_cvtepi32_ps(_mm512_add_epi32(acc1[i], off1)));
        if (bias) {
            v0 = _mm512_add_ps(v0, bias0);
            v1 = _mm512_add_ps(v1, bias1);
        }
        float *ci = c + i * ldc;
        if (accumulate) {
            v0 = _mm512_add_ps(_mm512_loadu_ps(ci), v0);
            v1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), v1);
        }
        _mm512_storeu_ps(ci, v0);
        _mm512_storeu_ps(ci + 16, v1);
    }
}

const m2k_q8_kernel m2k_q8_avx512_vnni = {
    .name = "avx512-vnni",
    .runs = vnni_runs,
    .mr = VNNI_MR,
    .nr = VNNI_NR,
    .kgroup = 4,
    .a_offset = 128,
    .a_bytes = 1,
    .a_panels = 0,
    .quantize = quantize_avx512,
    .micro = micro_vnni,
};
#endif
