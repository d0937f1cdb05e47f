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

/* A GEMM's output cut into tasks: mblocks × nchunks, task = mb + nb · mblocks. */
typedef struct {
    long mc, mblocks, panels, chunk_panels, nchunks;
} m2k_tile_grid;

/* One task's rows [m0, m0 + rows) and nr-wide panels [p0, p1). */
typedef struct {
    long m0, rows, p0, p1;
} m2k_tile_task;

m2k_tile_grid m2k_tile_grid_plan(long m, long n, int mr, int nr, int threads);
m2k_tile_task m2k_tile_grid_task(const m2k_tile_grid *g, long task, long m);

/* Edge tiles: micro-kernels only ever write whole mr × nr tiles, so a partial one (rows × cols
 * of C) runs on a local nr-wide tile. `begin` copies C into it when the kernel accumulates;
 * `end` copies the valid part back. */
void m2k_edge_tile_begin(float *tile, int nr, const float *c, long ldc, long rows, long cols, int load);
void m2k_edge_tile_end(const float *tile, int nr, float *c, long ldc, long rows, long cols);

/* Nonzero on a pool worker thread, or on the caller while it runs a pool job. */
int m2k_in_pool_task(void);

#endif
