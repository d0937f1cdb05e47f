/* AVX2 + FMA fp32 micro-kernel: 6 × 16 tile, 12 ymm accumulators (16 registers in all).
 * One body for both A layouts, a(i, k) = a[i·rs + k·cs], as in avx512_gemm.c. */
#if defined(__x86_64__)
#include "../core/internal.h"
#include <immintrin.h>

#define AVX2_MR 6
#define AVX2_NR 16

__attribute__((target("avx2,fma"), always_inline))
static inline void tile(long kc, const float *a, long rs, long cs, const float *bp, float *c,
                        long ldc, int load_c) {
    __m256 acc0[AVX2_MR], acc1[AVX2_MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < AVX2_MR; i++) {
        acc0[i] = load_c ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
        acc1[i] = load_c ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
    }
    for (long p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma clang loop unroll(full)
        for (int i = 0; i < AVX2_MR; i++) {
            __m256 x = _mm256_broadcast_ss(a + i * rs + p * cs);
            acc0[i] = _mm256_fmadd_ps(x, b0, acc0[i]);
            acc1[i] = _mm256_fmadd_ps(x, b1, acc1[i]);
        }
        bp += AVX2_NR;
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < AVX2_MR; i++) {
        _mm256_storeu_ps(c + i * ldc, acc0[i]);
        _mm256_storeu_ps(c + i * ldc + 8, acc1[i]);
    }
}

__attribute__((target("avx2,fma")))
void m2k_avx2_sgemm_micro(long kc, const float *ap, const float *bp, float *c, long ldc,
                          int load_c) {
    tile(kc, ap, 1, AVX2_MR, bp, c, ldc, load_c);
}

/* Six row streams. */
__attribute__((target("avx2,fma")))
void m2k_avx2_sgemm_rows(long kc, const float *a, long lda, const float *bp, float *c,
                         long ldc, int load_c) {
    tile(kc, a, lda, 1, bp, c, ldc, load_c);
}
#endif
