/* The portable variant: a small register-tile micro-kernel in plain C plus the reference
 * element-wise kernels. Runs everywhere; M2CLIP_KERNELS=scalar forces it. */
#include "kernels.h"

enum { SCALAR_MR = 4, SCALAR_NR = 8 };

extern const m2k_q8_kernel m2k_q8_scalar; /* q8_reference.c */
static const m2k_q8_kernel *const scalar_q8[] = {&m2k_q8_scalar, NULL};

static void scalar_sgemm_micro(long kc, const float *ap, const float *bp, float *c, long ldc,
                               int load_c) {
    float acc[SCALAR_MR][SCALAR_NR];
    for (int i = 0; i < SCALAR_MR; i++)
        for (int j = 0; j < SCALAR_NR; j++) acc[i][j] = load_c ? c[i * ldc + j] : 0.0f;
    for (long p = 0; p < kc; p++) {
        const float *a = ap + p * SCALAR_MR, *b = bp + p * SCALAR_NR;
        for (int i = 0; i < SCALAR_MR; i++)
            for (int j = 0; j < SCALAR_NR; j++) acc[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < SCALAR_MR; i++)
        for (int j = 0; j < SCALAR_NR; j++) c[i * ldc + j] = acc[i][j];
}

const m2k_kernels m2k_scalar_kernels = {
    .name = "scalar",
    .variant = M2K_VARIANT_SCALAR,
    .mr = SCALAR_MR,
    .nr = SCALAR_NR,
    .sgemm_micro = scalar_sgemm_micro,
    .bias_act = m2k_ref_bias_act,
    .layernorm = m2k_ref_layernorm,
    .softmax = m2k_ref_softmax,
    .quickgelu = m2k_ref_quickgelu,
    .gelu = m2k_ref_gelu,
    .add = m2k_ref_add,
    .f16_to_f32 = m2k_ref_f16_to_f32,
    .bf16_to_f32 = m2k_ref_bf16_to_f32,
    .q8_kernels = scalar_q8,
    .layernorm_backward = m2k_ref_layernorm_backward,
    .activation_backward = m2k_ref_activation_backward,
};
