/* fp16 → fp32 with F16C (vcvtph2ps): 8 lanes for the AVX2 table, 16 for the AVX-512 one.
 * A tail shorter than a vector goes through a zeroed buffer, so every element takes the
 * same instruction whatever its position. */
#if defined(__x86_64__)
#include "x86_kernels.h"
#include <immintrin.h>
#include <string.h>

__attribute__((target("f16c,avx2")))
void m2k_avx2_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    if (i < n) {
        uint16_t in[8] = {0};
        float out[8];
        memcpy(in, src + i, (n - i) * sizeof(uint16_t));
        _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)in)));
        memcpy(dst + i, out, (n - i) * sizeof(float));
    }
}

__attribute__((target("avx512f,f16c,avx2")))
void m2k_avx512_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i,
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) m2k_avx2_f16_to_f32(src + i, dst + i, n - i);
}
#endif
