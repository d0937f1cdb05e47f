/* bf16 → fp32 for the bf16-weight GEMM (m2k_sgemm_bf16b): a bf16 value is the top half of
 * an fp32, so widening is zero-extension to 32 bits and a 16-bit left shift (vpmovzxwd +
 * vpslld), exact for every pattern. 8 lanes for the AVX2 table; 16 for the AVX-512 one,
 * whose tail is a masked load and store. The AVX2 tail goes through a zeroed buffer. */
#if defined(__x86_64__)
#include "x86_kernels.h"
#include <immintrin.h>
#include <string.h>

__attribute__((target("avx2")))
static inline __m256 widen8(const uint16_t *src) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)src));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

__attribute__((target("avx2")))
void m2k_avx2_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, widen8(src + i));
    if (i < n) {
        uint16_t in[8] = {0};
        float out[8];
        memcpy(in, src + i, (n - i) * sizeof(uint16_t));
        _mm256_storeu_ps(out, widen8(in));
        memcpy(dst + i, out, (n - i) * sizeof(float));
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static inline __m512 widen16(__m256i bits) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
void m2k_avx512_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, widen16(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(dst + i, m, widen16(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}
#endif
