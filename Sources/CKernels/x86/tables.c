/* The x86 variant tables. Element-wise kernels live in avx2_vec.c / avx512_vec.c. */
#if defined(__x86_64__)
#include "../core/internal.h"
#include "x86_kernels.h"

/* int8 micro-kernels (q8_avx512.c, q8_avx2.c), best first: m2k_q8_pack takes the first this
 * CPU runs, so an AVX-512 CPU without VNNI packs for the AVX2 ones. */
extern const m2k_q8_kernel m2k_q8_avx512_vnni, m2k_q8_avx2_vnni, m2k_q8_avx2;
extern const m2k_bf16_kernel m2k_bf16_avx512; /* bf16_avx512.c */
static const m2k_q8_kernel *const avx2_q8[] = {&m2k_q8_avx2_vnni, &m2k_q8_avx2, NULL};
static const m2k_q8_kernel *const avx512_q8[] = {&m2k_q8_avx512_vnni, &m2k_q8_avx2_vnni,
                                                 &m2k_q8_avx2, NULL};

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
    .f16_to_f32 = m2k_avx2_f16_to_f32,
    .bf16_to_f32 = m2k_avx2_bf16_to_f32,
    .q8_kernels = avx2_q8,
    .layernorm_backward = m2k_avx2_layernorm_backward,
    .activation_backward = m2k_avx2_activation_backward,
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
    .f16_to_f32 = m2k_avx512_f16_to_f32,
    .bf16_to_f32 = m2k_avx512_bf16_to_f32,
    .q8_kernels = avx512_q8,
    .layernorm_backward = m2k_avx512_layernorm_backward,
    .activation_backward = m2k_avx512_activation_backward,
    .bf16_kernel = &m2k_bf16_avx512,
};
#endif
