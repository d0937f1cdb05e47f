/* Functions of the NEON variant, gathered into m2k_neon_kernels by neon.c. */
#ifndef M2CLIP_NEON_KERNELS_H
#define M2CLIP_NEON_KERNELS_H
#include "kernels.h"

/* The sgemm micro-tile: 8 rows × 12 columns, 24 q-register accumulators. */
enum { M2K_NEON_MR = 8, M2K_NEON_NR = 12 };

void m2k_neon_sgemm_micro(long kc, const float *ap, const float *bp, float *c, long ldc,
                          int load_c);
void m2k_neon_bias_act(float *c, long ldc, int m, int n, const float *bias,
                       m2k_activation act);
void m2k_neon_layernorm(const float *x, float *y, const float *gamma, const float *beta,
                        long rows, long cols, long ldx, long ldy, float eps);
void m2k_neon_softmax(float *x, long rows, long cols, long ld, float scale, int causal,
                      long causal_offset);
void m2k_neon_quickgelu(float *x, size_t n);
void m2k_neon_gelu(float *x, size_t n);
void m2k_neon_add(float *y, const float *x, size_t n);
void m2k_neon_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void m2k_neon_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/* backward (neon_backward.c) */
void m2k_neon_layernorm_backward(const float *x, long ldx, const float *dy, long lddy,
                                 const float *gamma, float *dx, long lddx, float *dgamma,
                                 float *dbeta, long rows, long cols, float eps, int accumulate);
void m2k_neon_activation_backward(m2k_activation act, const float *x, const float *dy,
                                  float *dx, size_t n);

#endif
