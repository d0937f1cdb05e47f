#if defined(__x86_64__)
#include "../core/internal.h"
#include "x86_kernels.h"
#define FWD(v) \
void m2k_##v##_bias_act(float *c, long ldc, int m, int n, const float *bias, m2k_activation act) { m2k_ref_bias_act(c, ldc, m, n, bias, act); } \
void m2k_##v##_layernorm(const float *x, float *y, const float *gamma, const float *beta, long rows, long cols, long ldx, long ldy, float eps) { m2k_ref_layernorm(x, y, gamma, beta, rows, cols, ldx, ldy, eps); } \
void m2k_##v##_softmax(float *x, long rows, long cols, long ld, float scale, int causal, long o) { m2k_ref_softmax(x, rows, cols, ld, scale, causal, o); } \
void m2k_##v##_quickgelu(float *x, size_t n) { m2k_ref_quickgelu(x, n); } \
void m2k_##v##_gelu(float *x, size_t n) { m2k_ref_gelu(x, n); } \
void m2k_##v##_add(float *y, const float *x, size_t n) { m2k_ref_add(y, x, n); }
FWD(avx2)
FWD(avx512)
#endif
