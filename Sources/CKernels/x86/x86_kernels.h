/* Functions of the x86 variants, gathered into tables by tables.c. */
#ifndef M2CLIP_X86_KERNELS_H
#define M2CLIP_X86_KERNELS_H
#include "kernels.h"

#define M2K_DECLARE_VARIANT(v)                                                                \
    void m2k_##v##_sgemm_micro(long kc, const float *ap, const float *bp, float *c, long ldc, \
                               int load_c);                                                  \
    void m2k_##v##_sgemm_rows(long kc, const float *a, long lda, const float *bp, float *c,   \
                              long ldc, int load_c);                                         \
    void m2k_##v##_bias_act(float *c, long ldc, int m, int n, const float *bias,              \
                            m2k_activation act);                                             \
    void m2k_##v##_layernorm(const float *x, float *y, const float *gamma, const float *beta, \
                             long rows, long cols, long ldx, long ldy, float eps);           \
    void m2k_##v##_softmax(float *x, long rows, long cols, long ld, float scale, int causal, \
                           long causal_offset);                                              \
    void m2k_##v##_quickgelu(float *x, size_t n);                                            \
    void m2k_##v##_gelu(float *x, size_t n);                                                 \
    void m2k_##v##_add(float *y, const float *x, size_t n);                                  \
    void m2k_##v##_f16_to_f32(const uint16_t *src, float *dst, size_t n);                   \
    void m2k_##v##_bf16_to_f32(const uint16_t *src, float *dst, size_t n);                  \
    /* backward (avx2_backward.c / avx512_backward.c) */                                     \
    void m2k_##v##_layernorm_backward(const float *x, long ldx, const float *dy, long lddy,  \
                                      const float *gamma, float *dx, long lddx,              \
                                      float *dgamma, float *dbeta, long rows, long cols,     \
                                      float eps, int accumulate);                            \
    void m2k_##v##_activation_backward(m2k_activation act, const float *x, const float *dy, \
                                       float *dx, size_t n);

M2K_DECLARE_VARIANT(avx2)
M2K_DECLARE_VARIANT(avx512)
#endif
