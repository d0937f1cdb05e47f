/* AVX-512 fp32 micro-kernel: 12 × 32 tile, 24 zmm accumulators, A broadcast (embedded
 * broadcast), two B vectors per k. One body serves both A layouts: a(i, k) = a[i·rs + k·cs]
 * (packed: rs = 1, cs = MR; in place: rs = lda, cs = 1); with the strides known at each call
 * site it compiles to two specialised loops. */
#if defined(__x86_64__)
#include "../core/internal.h"
#include <immintrin.h>

#define AVX512_MR 12
#define AVX512_NR 32

__attribute__((target("avx512f"), always_inline))
static inline void tile(long kc, const float *a, long rs, long cs, const float *bp, float *c,
                        long ldc, int load_c) {
    __m512 acc0[AVX512_MR], acc1[AVX512_MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < AVX512_MR; i++) {
        acc0[i] = load_c ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
        acc1[i] = load_c ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
    }
    for (long p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma clang loop unroll(full)
        for (int i = 0; i < AVX512_MR; i++) {
            __m512 x = _mm512_set1_ps(a[i * rs + p * cs]);
            acc0[i] = _mm512_fmadd_ps(x, b0, acc0[i]);
            acc1[i] = _mm512_fmadd_ps(x, b1, acc1[i]);
        }
        bp += AVX512_NR;
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < AVX512_MR; i++) {
        _mm512_storeu_ps(c + i * ldc, acc0[i]);
        _mm512_storeu_ps(c + i * ldc + 16, acc1[i]);
    }
}

__attribute__((target("avx512f")))
void m2k_avx512_sgemm_micro(long kc, const float *ap, const float *bp, float *c, long ldc,
                            int load_c) {
    tile(kc, ap, 1, AVX512_MR, bp, c, ldc, load_c);
}

/* Twelve row streams, each line of A serving sixteen k steps. */
__attribute__((target("avx512f")))
void m2k_avx512_sgemm_rows(long kc, const float *a, long lda, const float *bp, float *c,
                           long ldc, int load_c) {
    tile(kc, a, lda, 1, bp, c, ldc, load_c);
}
#endif
