/* The x86 variant tables. Element-wise kernels live in avx2_vec.c / avx512_vec.c. */
#if defined(__x86_64__)
#include "../core/internal.h"
#include "x86_kernels.h"

const m2k_kernels m2k_avx2_kernels = {
    .name = "avx2",
    .variant = M2K_VARIANT_AVX2,
    .mr = 6,
    .nr = 16,
    .sgemm_micro = m2k_avx2_sgemm_micro,
    .sgemm_rows = m2k_avx2_sgemm_rows,
    .bias_act = m2k_avx2_bias_act,
    .layernorm = m2k_avx2_layernorm,
    .softmax = m2k_avx2_softmax,
    .quickgelu = m2k_avx2_quickgelu,
    .gelu = m2k_avx2_gelu,
    .add = m2k_avx2_add,
};

const m2k_kernels m2k_avx512_kernels = {
    .name = "avx512",
    .variant = M2K_VARIANT_AVX512,
    .mr = 12,
    .nr = 32,
    .sgemm_micro = m2k_avx512_sgemm_micro,
    .sgemm_rows = m2k_avx512_sgemm_rows,
    .bias_act = m2k_avx512_bias_act,
    .layernorm = m2k_avx512_layernorm,
    .softmax = m2k_avx512_softmax,
    .quickgelu = m2k_avx512_quickgelu,
    .gelu = m2k_avx512_gelu,
    .add = m2k_avx512_add,
};
#endif
