/* The GEMM driver, shared by every variant (Goto/BLIS loop order):
 *   task (M block × N chunk) → K blocks of KC → [pack the A block] → N panels → M panels
 *   → the variant's mr × nr micro-kernel.
 * B (the weights) is packed once at load into nr-wide, K-major panels, and the current
 * KC × nr slice of a panel stays in L1 while the M panels of the block stream past it.
 * A is read in place by variants with a row-streaming kernel (sgemm_rows): packing A per
 * task would copy it once per N chunk, which costs more than the strided loads save.
 * Other variants pack the A block into k-major mr-row panels in per-thread scratch. Edges
 * go through a local tile so micro-kernels only ever see full tiles.
 * B may also be held as fp16 or bf16 (m2k_sgemm_f16b, m2k_sgemm_bf16b): the same panels in
 * half the bytes. The driver then widens each KC × nr slice into per-thread scratch (slot 4)
 * with the table's f16_to_f32 or bf16_to_f32 right before the M panels that reuse it, so
 * one conversion serves the whole M block. */
#include "internal.h"
#include <string.h>

enum { KC = 384 };

size_t m2k_packed_b_floats(int nr, long n, long k) {
    long panels = (n + nr - 1) / nr;
    return (size_t)panels * (size_t)k * (size_t)nr;
}

void m2k_pack_b(int nr, long n, long k, const float *b, long ldb, m2k_b_layout layout,
                float *out) {
    long panels = (n + nr - 1) / nr;
    for (long p = 0; p < panels; p++) {
        float *dst = out + p * k * nr;
        long cols = n - p * nr < nr ? n - p * nr : nr;
        for (long kk = 0; kk < k; kk++) {
            float *row = dst + kk * nr;
            if (layout == M2K_B_KN) {
                memcpy(row, b + kk * ldb + p * nr, (size_t)cols * sizeof(float));
            } else {
                for (long j = 0; j < cols; j++) row[j] = b[(p * nr + j) * ldb + kk];
            }
            for (long j = cols; j < nr; j++) row[j] = 0.0f;
        }
    }
}

/* m2k_pack_b's panels in 16-bit patterns (fp16 or bf16) from either source: fp32 values bf
 * rounded by `narrow`, or patterns bh copied as they are; exactly one of bf, bh is set. */
static void pack_b_16(int nr, long n, long k, const float *bf, uint16_t (*narrow)(float),
                      const uint16_t *bh, long ldb, m2k_b_layout layout, uint16_t *out) {
    long panels = (n + nr - 1) / nr;
    for (long p = 0; p < panels; p++) {
        uint16_t *dst = out + p * k * nr;
        long cols = n - p * nr < nr ? n - p * nr : nr;
        for (long kk = 0; kk < k; kk++) {
            uint16_t *row = dst + kk * nr;
            for (long j = 0; j < cols; j++) {
                long at = layout == M2K_B_KN ? kk * ldb + p * nr + j : (p * nr + j) * ldb + kk;
                row[j] = bf ? narrow(bf[at]) : bh[at];
            }
            for (long j = cols; j < nr; j++) row[j] = 0;
        }
    }
}

void m2k_pack_b_f16(int nr, long n, long k, const float *b, long ldb, m2k_b_layout layout,
                    uint16_t *out) {
    pack_b_16(nr, n, k, b, m2k_f16_from_float, NULL, ldb, layout, out);
}

void m2k_pack_b_f16_bits(int nr, long n, long k, const uint16_t *b, long ldb,
                         m2k_b_layout layout, uint16_t *out) {
    pack_b_16(nr, n, k, NULL, NULL, b, ldb, layout, out);
}

void m2k_pack_b_bf16(int nr, long n, long k, const float *b, long ldb, m2k_b_layout layout,
                     uint16_t *out) {
    pack_b_16(nr, n, k, b, m2k_bf16_from_float, NULL, ldb, layout, out);
}

void m2k_pack_b_bf16_bits(int nr, long n, long k, const uint16_t *b, long ldb,
                          m2k_b_layout layout, uint16_t *out) {
    pack_b_16(nr, n, k, NULL, NULL, b, ldb, layout, out);
}

/* Ap[ir][kk][i] = A[m0 + ir*mr + i][k0 + kk], rows past `rows` zero. */
static void pack_a(int mr, long rows, long kc, const float *a, long lda, float *ap) {
    long panels = (rows + mr - 1) / mr;
    for (long ir = 0; ir < panels; ir++) {
        float *dst = ap + ir * kc * mr;
        long valid = rows - ir * mr < mr ? rows - ir * mr : mr;
        const float *src = a + ir * mr * lda;
        if (valid == mr) {
            for (long kk = 0; kk < kc; kk++)
                for (int i = 0; i < mr; i++) dst[kk * mr + i] = src[i * lda + kk];
        } else {
            for (long kk = 0; kk < kc; kk++)
                for (int i = 0; i < mr; i++)
                    dst[kk * mr + i] = i < valid ? src[i * lda + kk] : 0.0f;
        }
    }
}

typedef struct {
    const m2k_kernels *k;
    long m, n, kdim, lda, ldc;
    m2k_tile_grid grid;
    const float *a, *bias;
    /* B's panels: fp32, read in place when widen is NULL; else fp16 or bf16 bits that
     * widen (the table's f16_to_f32 or bf16_to_f32) turns into fp32 a slice at a time. */
    const void *bp;
    void (*widen)(const uint16_t *src, float *dst, size_t n);
    float *c;
    m2k_activation act;
    int accumulate;
} gemm_job;

static void gemm_task(void *ctx, long task, int worker) {
    (void)worker;
    const gemm_job *g = ctx;
    const m2k_kernels *k = g->k;
    const int mr = k->mr, nr = k->nr;
    const m2k_tile_task t = m2k_tile_grid_task(&g->grid, task, g->m);
    const long m0 = t.m0, rows = t.rows, p0 = t.p0, p1 = t.p1;
    long mpanels = (rows + mr - 1) / mr;
    long kc_max = g->kdim < KC ? g->kdim : KC;
    const int in_place = k->sgemm_rows != NULL;
    /* Packed A block, or (in place) only the zero-padded rows of a partial last panel. */
    float *ap = m2k_thread_scratch(0, (size_t)((in_place ? 1 : mpanels) * mr * kc_max) *
                                          sizeof(float));
    /* The current KC × nr slice of B widened to fp32 (fp16 or bf16 B only). */
    float *b_slice = g->widen ? m2k_thread_scratch(4, (size_t)(kc_max * nr) * sizeof(float))
                              : NULL;
    float tile[32 * 64] __attribute__((aligned(64)));
    long full_panels = rows / mr;

    for (long k0 = 0; k0 < g->kdim; k0 += KC) {
        long kc = g->kdim - k0 < KC ? g->kdim - k0 : KC;
        int last = k0 + kc >= g->kdim;
        int load = k0 > 0 || g->accumulate;
        const float *a_block = g->a + m0 * g->lda + k0;
        if (!in_place) {
            pack_a(mr, rows, kc, a_block, g->lda, ap);
        } else if (full_panels < mpanels) {
            long r = rows - full_panels * mr;
            for (long i = 0; i < mr; i++) {
                if (i < r) memcpy(ap + i * kc, a_block + (full_panels * mr + i) * g->lda,
                                  (size_t)kc * sizeof(float));
                else memset(ap + i * kc, 0, (size_t)kc * sizeof(float));
            }
        }
        for (long p = p0; p < p1; p++) {
            const float *bp;
            if (g->widen) {
                g->widen((const uint16_t *)g->bp + (p * g->kdim + k0) * nr, b_slice,
                         (size_t)(kc * nr));
                bp = b_slice;
            } else {
                bp = (const float *)g->bp + (p * g->kdim + k0) * nr;
            }
            long cols = g->n - p * nr < nr ? g->n - p * nr : nr;
            for (long ir = 0; ir < mpanels; ir++) {
                long r = rows - ir * mr < mr ? rows - ir * mr : mr;
                float *c = g->c + (m0 + ir * mr) * g->ldc + p * nr;
                const float *a = in_place ? (ir < full_panels ? a_block + ir * mr * g->lda : ap)
                                          : ap + ir * kc * mr;
                long lda = ir < full_panels ? g->lda : kc;
                if (r == mr && cols == nr) {
                    if (in_place) k->sgemm_rows(kc, a, lda, bp, c, g->ldc, load);
                    else k->sgemm_micro(kc, a, bp, c, g->ldc, load);
                } else {
                    m2k_edge_tile_begin(tile, nr, c, g->ldc, r, cols, load);
                    if (in_place) k->sgemm_rows(kc, a, lda, bp, tile, nr, load);
                    else k->sgemm_micro(kc, a, bp, tile, nr, load);
                    m2k_edge_tile_end(tile, nr, c, g->ldc, r, cols);
                }
                if (last && (g->bias || g->act != M2K_ACT_NONE))
                    k->bias_act(c, g->ldc, (int)r, (int)cols, g->bias ? g->bias + p * nr : NULL,
                                g->act);
            }
        }
    }
}

static void run_gemm(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                     const float *a, long lda, const void *bp,
                     void (*widen)(const uint16_t *, float *, size_t), float *c, long ldc,
                     const float *bias, m2k_activation act, int accumulate) {
    if (m <= 0 || n <= 0) return;
    if (kdim <= 0) {
        for (long i = 0; i < m; i++) {
            if (!accumulate) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        }
        if (bias || act != M2K_ACT_NONE) k->bias_act(c, ldc, (int)m, (int)n, bias, act);
        return;
    }
    gemm_job g = {.k = k, .m = m, .n = n, .kdim = kdim, .lda = lda, .ldc = ldc, .a = a,
                  .bp = bp, .widen = widen, .bias = bias, .c = c, .act = act,
                  .accumulate = accumulate};
    const int threads = m2k_in_pool_task() ? 1 : m2k_pool_threads(pool);
    g.grid = m2k_tile_grid_plan(m, n, k->mr, k->nr, threads);
    m2k_pool_run(threads > 1 ? pool : NULL, g.grid.mblocks * g.grid.nchunks, gemm_task, &g);
}

void m2k_sgemm(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
               const float *a, long lda, const float *bp, float *c, long ldc,
               const float *bias, m2k_activation act, int accumulate) {
    run_gemm(k, pool, m, n, kdim, a, lda, bp, NULL, c, ldc, bias, act, accumulate);
}

void m2k_sgemm_f16b(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                    const float *a, long lda, const uint16_t *bp, float *c, long ldc,
                    const float *bias, m2k_activation act, int accumulate) {
    run_gemm(k, pool, m, n, kdim, a, lda, bp, k->f16_to_f32, c, ldc, bias, act, accumulate);
}

void m2k_sgemm_bf16b(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                     const float *a, long lda, const uint16_t *bp, float *c, long ldc,
                     const float *bias, m2k_activation act, int accumulate) {
    run_gemm(k, pool, m, n, kdim, a, lda, bp, k->bf16_to_f32, c, ldc, bias, act, accumulate);
}
