/* Declarations shared inside CKernels, not part of the public header. */
#ifndef M2CLIP_KERNELS_INTERNAL_H
#define M2CLIP_KERNELS_INTERNAL_H
#include "kernels.h"

extern const m2k_kernels m2k_scalar_kernels;
#if defined(__x86_64__)
extern const m2k_kernels m2k_avx2_kernels;
extern const m2k_kernels m2k_avx512_kernels;
#endif
#if defined(__aarch64__)
extern const m2k_kernels m2k_neon_kernels;
#endif

/* Nonzero on a pool worker thread, or on the caller while it runs a pool job. */
int m2k_in_pool_task(void);

#endif
