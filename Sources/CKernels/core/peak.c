/* Peak arithmetic throughput of this machine, measured, so that GEMM figures can be reported
 * as a share of what the cores really do (clock speeds under AVX-512 load vary by part):
 * independent accumulator chains, enough to cover the instruction latency on two ports. */
#if defined(__x86_64__)
#include "internal.h"
#include <immintrin.h>
#include <time.h>

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { CHAINS = 24 };

__attribute__((target("avx512f"), noinline))
static double fma512(long iterations) {
    __m512 acc[CHAINS];
    const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    double start = seconds_now();
    for (long it = 0; it < iterations; it++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
        __asm__ volatile("" ::"v"(b));
    }
    double elapsed = seconds_now() - start;
    float sink = 0;
    for (int i = 0; i < CHAINS; i++) sink += _mm512_reduce_add_ps(acc[i]);
    __asm__ volatile("" ::"x"(sink));
    return (double)iterations * CHAINS * 32 / elapsed / 1e9; /* 16 lanes × 2 flops */
}

__attribute__((target("avx2,fma"), noinline))
static double fma256(long iterations) {
    __m256 acc[12];
    const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
    double start = seconds_now();
    for (long it = 0; it < iterations; it++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
        __asm__ volatile("" ::"x"(b));
    }
    double elapsed = seconds_now() - start;
    float lanes[8], sink = 0;
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(lanes, acc[i]);
        for (int j = 0; j < 8; j++) sink += lanes[j];
    }
    __asm__ volatile("" ::"x"(sink));
    return (double)iterations * 12 * 16 / elapsed / 1e9;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline))
static double vnni512(long iterations) {
    __m512i acc[CHAINS];
    const __m512i b = _mm512_set1_epi8(3), c = _mm512_set1_epi8(-2);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_epi32(i);
    double start = seconds_now();
    for (long it = 0; it < iterations; it++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], b, c);
        __asm__ volatile("" ::"v"(b));
    }
    double elapsed = seconds_now() - start;
    long sink = 0;
    for (int i = 0; i < CHAINS; i++) sink += _mm512_reduce_add_epi32(acc[i]);
    __asm__ volatile("" ::"r"(sink));
    return (double)iterations * CHAINS * 128 / elapsed / 1e9; /* 64 u8×s8 products, ×2 ops */
}

double m2k_peak_fp32_gflops(long iterations) {
    const m2k_cpu_features *f = m2k_cpu();
    if (f->avx512f) return fma512(iterations);
    if (f->avx2 && f->fma) return fma256(iterations);
    return 0;
}

double m2k_peak_int8_gops(long iterations) {
    const m2k_cpu_features *f = m2k_cpu();
    return f->avx512vnni && f->avx512bw ? vnni512(iterations) : 0;
}
#else
#include "kernels.h"
double m2k_peak_fp32_gflops(long iterations) { (void)iterations; return 0; }
double m2k_peak_int8_gops(long iterations) { (void)iterations; return 0; }
#endif
