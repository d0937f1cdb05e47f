/* How a GEMM's output is cut into pool tasks, shared by the fp32 and int8 drivers:
 * M blocks of about MC_TARGET rows (a multiple of mr, evenly sized) × N chunks of about
 * NC_TARGET columns (whole nr panels), halving the chunks until there are enough tasks for
 * the threads to share evenly. */
#include "internal.h"
#include <string.h>

enum { MC_TARGET = 192, NC_TARGET = 256 };

m2k_tile_grid m2k_tile_grid_plan(long m, long n, int mr, int nr, int threads) {
    m2k_tile_grid g;
    g.mblocks = (m + MC_TARGET - 1) / MC_TARGET;
    long per = (m + g.mblocks - 1) / g.mblocks;
    g.mc = (per + mr - 1) / mr * mr;
    g.mblocks = (m + g.mc - 1) / g.mc;
    g.panels = (n + nr - 1) / nr;
    g.chunk_panels = NC_TARGET / nr > 0 ? NC_TARGET / nr : 1;
    while (g.chunk_panels > 1 &&
           g.mblocks * ((g.panels + g.chunk_panels - 1) / g.chunk_panels) < 4L * threads)
        g.chunk_panels /= 2;
    g.nchunks = (g.panels + g.chunk_panels - 1) / g.chunk_panels;
    return g;
}

m2k_tile_task m2k_tile_grid_task(const m2k_tile_grid *g, long task, long m) {
    m2k_tile_task t;
    long mb = task % g->mblocks, nb = task / g->mblocks;
    t.m0 = mb * g->mc;
    t.rows = m - t.m0 < g->mc ? m - t.m0 : g->mc;
    t.p0 = nb * g->chunk_panels;
    t.p1 = t.p0 + g->chunk_panels < g->panels ? t.p0 + g->chunk_panels : g->panels;
    return t;
}

void m2k_edge_tile_begin(float *tile, int nr, const float *c, long ldc, long rows, long cols, int load) {
    if (!load) return;
    for (long i = 0; i < rows; i++) memcpy(tile + i * nr, c + i * ldc, (size_t)cols * sizeof(float));
}

void m2k_edge_tile_end(const float *tile, int nr, float *c, long ldc, long rows, long cols) {
    for (long i = 0; i < rows; i++) memcpy(c + i * ldc, tile + i * nr, (size_t)cols * sizeof(float));
}
