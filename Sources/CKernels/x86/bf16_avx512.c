/* AVX-512 BF16 micro-kernel: 12 × 32 tile, 24 zmm accumulators. Per pair of k values: two
 * B vectors (16 columns × 2 bf16 each) and per row one broadcast of the row's bf16 pair;
 * vdpbf16ps adds both products of a pair to each column's fp32 lane. The twelve
 * rows of A are read in place (row streams, each 64-byte line serving 16 pairs). */
#if defined(__x86_64__)
#include "../core/internal.h"
#include <immintrin.h>
#include <string.h>

#define BF16_MR 12
#define BF16_NR 32
#define BF16_TARGET "avx512f,avx512bw,avx512vl,avx512bf16"

static int runs(void) {
    const m2k_cpu_features *f = m2k_cpu();
    return f->avx512f && f->avx512bw && f->avx512vl && f->avx512bf16;
}

__attribute__((target(BF16_TARGET)))
static void micro(long pairs, const uint16_t *a, long lda, const uint16_t *b, float *c, long ldc,
                  int load_c) {
    __m512 acc0[BF16_MR], acc1[BF16_MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < BF16_MR; i++) {
        acc0[i] = load_c ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
        acc1[i] = load_c ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
    }
    for (long g = 0; g < pairs; g++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 32);
#pragma clang loop unroll(full)
        for (int i = 0; i < BF16_MR; i++) {
            int32_t pair;
            memcpy(&pair, a + i * lda + 2 * g, sizeof pair);
            __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
            acc0[i] = _mm512_dpbf16_ps(acc0[i], x, b0);
            acc1[i] = _mm512_dpbf16_ps(acc1[i], x, b1);
        }
        b += 2 * BF16_NR;
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < BF16_MR; i++) {
        _mm512_storeu_ps(c + i * ldc, acc0[i]);
        _mm512_storeu_ps(c + i * ldc + 16, acc1[i]);
    }
}

/* vcvtne2ps2bf16 rounds to nearest even (subnormal inputs count as zero); the tail is
 * masked, and the padding to kpad is zero. */
__attribute__((target(BF16_TARGET)))
static void convert(const float *x, long kdim, long kpad, uint16_t *out) {
    long kk = 0;
    for (; kk + 32 <= kdim; kk += 32) {
        __m512 lo = _mm512_loadu_ps(x + kk), hi = _mm512_loadu_ps(x + kk + 16);
        _mm512_storeu_si512(out + kk, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    if (kk < kdim) {
        long rest = kdim - kk;
        __mmask16 mlo = (__mmask16)(rest >= 16 ? 0xffff : (1u << rest) - 1);
        __mmask16 mhi = (__mmask16)(rest > 16 ? (1u << (rest - 16)) - 1 : 0);
        __m512 lo = _mm512_maskz_loadu_ps(mlo, x + kk);
        __m512 hi = _mm512_maskz_loadu_ps(mhi, x + kk + 16);
        __mmask32 mout = (__mmask32)((1ull << rest) - 1);
        _mm512_mask_storeu_epi16(out + kk, mout, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        kk = kdim;
    }
    for (; kk < kpad; kk++) out[kk] = 0;
}

const m2k_bf16_kernel m2k_bf16_avx512 = {
    .name = "avx512-bf16",
    .runs = runs,
    .mr = BF16_MR,
    .nr = BF16_NR,
    .micro = micro,
    .convert = convert,
};
#endif
