/* The NEON variant (plain Armv8-A Advanced SIMD, which every AArch64 CPU has): the 8 × 12
 * sgemm micro-kernel of neon_gemm.c and the element-wise kernels of neon_vec.c. */
#if defined(__aarch64__)
#include "../core/internal.h"
#include "neon_kernels.h"

/* int8 micro-kernels (q8_neon.c): smmla where the CPU has it (HWCAP2_I8MM), else sdot
 * (HWCAP_ASIMDDP), else widening multiplies. */
extern const m2k_q8_kernel m2k_q8_neon_i8mm, m2k_q8_neon_dot, m2k_q8_neon;
static const m2k_q8_kernel *const neon_q8[] = {&m2k_q8_neon_i8mm, &m2k_q8_neon_dot, &m2k_q8_neon,
                                              NULL};

const m2k_kernels m2k_neon_kernels = {
    .name = "neon",
    .variant = M2K_VARIANT_NEON,
    .mr = M2K_NEON_MR,
    .nr = M2K_NEON_NR,
    .sgemm_micro = m2k_neon_sgemm_micro,
    .bias_act = m2k_neon_bias_act,
    .layernorm = m2k_neon_layernorm,
    .softmax = m2k_neon_softmax,
    .quickgelu = m2k_neon_quickgelu,
    .gelu = m2k_neon_gelu,
    .add = m2k_neon_add,
    .f16_to_f32 = m2k_neon_f16_to_f32,
    .bf16_to_f32 = m2k_neon_bf16_to_f32,
    .q8_kernels = neon_q8,
    .layernorm_backward = m2k_neon_layernorm_backward,
    .activation_backward = m2k_neon_activation_backward,
};
#endif
