/* The int8 GEMM driver, shared by every int8 micro-kernel (kernels.h, int8 section):
 *   1. quantize x once per call, rows in parallel on the pool, into the calling thread's
 *      scratch: xq + a_offset (bytes, or int16 for vpmaddwd), K padded with zeros to the
 *      kernel's k group, one scale a row;
 *   2. tasks over (M block × N chunk), as core/gemm.c: N panels → M panels → the kernel's
 *      mr × nr tile over the whole of K. The kernel dequantizes in its store (scales, the
 *      +128 correction, bias, accumulate); an activation follows on the tile while it is
 *      still in L1, through the table's bias_act. Edge tiles go through a local buffer.
 * K is not blocked: the int32 sums must see all of K before they can be scaled (blocking
 * would park int32 tiles between K blocks), and it need not be: a W panel (K × nr bytes) and
 * an A block (≤ 192 rows × K bytes) stay in L2, from where the AVX-512 tile still runs at
 * the vpdpbusd peak for K = 3072.
 *
 * Packed blob: a header, then per-channel w_scale and b_offset (= −a_offset · Σ_k Wq[n,k]),
 * both padded to whole panels, then the panels: panel p holds Wq[p·nr + j, g·kgroup + t] at
 * ((g · nr) + j) · kgroup + t, zero past N and K. The header names the micro-kernel
 * m2k_q8_pack chose for this CPU (the table's first that runs: an AVX-512 table on a CPU
 * without VNNI packs for the AVX2 kernel), and m2k_q8_gemm runs that one: the blob lives in
 * this process only.
 *
 * The sums are int32 (they may wrap on the way with the +128 trick, never at the end): kdim
 * must stay below 2³¹ / (127 · 128) = 132,104 (any ViT is far below). */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const m2k_q8_kernel m2k_q8_scalar;

enum { ROWS_PER_QUANTIZE_TASK = 16 };

#define Q8_MAGIC 0x3851324Du /* "M2Q8" in memory */

typedef struct {
    uint32_t magic;
    uint32_t reserved;
    const m2k_q8_kernel *kernel;
    int64_t n, kdim, kpad;
    char pad[64 - 2 * sizeof(uint32_t) - sizeof(void *) - 3 * sizeof(int64_t)];
} q8_header;

_Static_assert(sizeof(q8_header) == 64, "the panels start 64-byte aligned");

static long round_up(long v, long to) { return (v + to - 1) / to * to; }

static const m2k_q8_kernel *choose_kernel(const m2k_kernels *k) {
    if (k->q8_kernels)
        for (const m2k_q8_kernel *const *q = k->q8_kernels; *q; q++)
            if ((*q)->runs()) return *q;
    return &m2k_q8_scalar;
}

/* Offsets in the blob of the scales, the offsets and the panels. */
typedef struct { size_t scales, offsets, panels, total; } q8_layout;

static q8_layout layout_of(const m2k_q8_kernel *q, long n, long kdim) {
    long npad = round_up(n, q->nr), kpad = round_up(kdim, q->kgroup);
    q8_layout l;
    l.scales = sizeof(q8_header);
    l.offsets = l.scales + (size_t)round_up(npad * 4, 64);
    l.panels = l.offsets + (size_t)round_up(npad * 4, 64);
    l.total = l.panels + (size_t)npad * (size_t)kpad;
    return l;
}

size_t m2k_q8_packed_bytes(const m2k_kernels *k, long n, long kdim) {
    return layout_of(choose_kernel(k), n, kdim).total;
}

void m2k_q8_pack(const m2k_kernels *k, long n, long kdim, const int8_t *wq, const float *w_scale,
                 void *packed) {
    const m2k_q8_kernel *q = choose_kernel(k);
    const int nr = q->nr, kg = q->kgroup;
    long npad = round_up(n, nr), kpad = round_up(kdim, kg), panels = npad / nr;
    q8_layout l = layout_of(q, n, kdim);
    uint8_t *base = packed;
    q8_header h = {.magic = Q8_MAGIC, .kernel = q, .n = n, .kdim = kdim, .kpad = kpad};
    memcpy(base, &h, sizeof h);

    float *scales = (float *)(base + l.scales);
    int32_t *offsets = (int32_t *)(base + l.offsets);
    for (long j = 0; j < npad; j++) {
        int64_t sum = 0;
        if (j < n)
            for (long kk = 0; kk < kdim; kk++) sum += wq[j * kdim + kk];
        scales[j] = j < n ? w_scale[j] : 0.0f;
        /* Wraps like the kernels' int32 sums; the corrected total fits. */
        offsets[j] = (int32_t)(uint32_t)(-(int64_t)q->a_offset * sum);
    }

    int8_t *dst = (int8_t *)(base + l.panels);
    for (long p = 0; p < panels; p++) {
        for (long g = 0; g < kpad / kg; g++) {
            for (int j = 0; j < nr; j++) {
                long col = p * nr + j;
                for (int t = 0; t < kg; t++) {
                    long kk = g * kg + t;
                    *dst++ = col < n && kk < kdim ? wq[col * kdim + kk] : 0;
                }
            }
        }
    }
}

/* ---- step 1: quantize the rows of x ---------------------------------------------------- */

typedef struct {
    const m2k_q8_kernel *q;
    long m, mpad, kdim, kpad, lda, ldq; /* ldq in bytes */
    const float *x;
    uint8_t *xq;     /* rows: (mpad, ldq); panels: (mpad / mr, kpad / kgroup, mr, kgroup) */
    float *x_scale;  /* (mpad) */
    uint8_t *rowbuf; /* panels only: one row of kpad elements per worker */
} quantize_job;

static void quantize_task(void *ctx, long task, int worker) {
    const quantize_job *j = ctx;
    const m2k_q8_kernel *q = j->q;
    const long row_bytes = j->kpad * q->a_bytes;
    long r1 = (task + 1) * ROWS_PER_QUANTIZE_TASK;
    if (r1 > j->mpad) r1 = j->mpad;
    for (long r = task * ROWS_PER_QUANTIZE_TASK; r < r1; r++) {
        uint8_t *row = q->a_panels ? j->rowbuf + worker * row_bytes : j->xq + r * j->ldq;
        if (r < j->m) {
            /* x is usually far (the output of the last op): the next row comes in meanwhile
             * (past the task's last row, likely for this thread's next task). */
            const float *next = r + 1 < j->m ? j->x + (r + 1) * j->lda : NULL;
            q->quantize(j->x + r * j->lda, j->kdim, j->kpad, q->a_offset, row, &j->x_scale[r],
                        next);
        } else { /* padding rows of the last panel: zero, and scale 0 */
            memset(row, q->a_offset, (size_t)row_bytes); /* a_offset is 0 for int16 A */
            j->x_scale[r] = 0.0f;
        }
        if (q->a_panels) {
            const long mr = q->mr, group = q->kgroup * q->a_bytes; /* bytes */
            uint8_t *panel = j->xq + (r / mr) * mr * row_bytes + (r % mr) * group;
            for (long g = 0; g < j->kpad / q->kgroup; g++)
                memcpy(panel + g * mr * group, row + g * group, (size_t)group);
        }
    }
}

/* ---- step 2: the tiles ------------------------------------------------------------------ */

typedef struct {
    const m2k_kernels *k;
    const m2k_q8_kernel *q;
    long m, n, ldq, ldc, groups;
    m2k_tile_grid grid;
    const uint8_t *xq;
    const float *x_scale, *w_scale, *bias;
    const int32_t *b_offset;
    const int8_t *panels;
    float *c;
    m2k_activation act;
    int accumulate;
} gemm_job;

static void gemm_task(void *ctx, long task, int worker) {
    (void)worker;
    const gemm_job *g = ctx;
    const m2k_q8_kernel *q = g->q;
    const int mr = q->mr, nr = q->nr;
    const m2k_tile_task t = m2k_tile_grid_task(&g->grid, task, g->m);
    const long m0 = t.m0, rows = t.rows, p0 = t.p0, p1 = t.p1;
    long mpanels = (rows + mr - 1) / mr;
    long panel_bytes = g->groups * q->kgroup * nr;
    float tile[32 * 64] __attribute__((aligned(64)));
    float edge_bias[64];

    for (long p = p0; p < p1; p++) {
        const int8_t *b = g->panels + p * panel_bytes;
        long cols = g->n - p * nr < nr ? g->n - p * nr : nr;
        const float *bias = g->bias ? g->bias + p * nr : NULL;
        if (bias && cols < nr) { /* the bias has no padding: a zero-padded copy */
            memcpy(edge_bias, bias, (size_t)cols * sizeof(float));
            memset(edge_bias + cols, 0, (size_t)(nr - cols) * sizeof(float));
            bias = edge_bias;
        }
        for (long ir = 0; ir < mpanels; ir++) {
            long row0 = m0 + ir * mr;
            long r = rows - ir * mr < mr ? rows - ir * mr : mr;
            const uint8_t *a = g->xq + row0 * g->ldq; /* a row, or a panel (ldq = a row) */
            float *c = g->c + row0 * g->ldc + p * nr;
            if (r == mr && cols == nr) {
                q->micro(g->groups, a, g->ldq, b, g->b_offset + p * nr, g->x_scale + row0,
                         g->w_scale + p * nr, bias, c, g->ldc, g->accumulate);
            } else {
                m2k_edge_tile_begin(tile, nr, c, g->ldc, r, cols, g->accumulate);
                q->micro(g->groups, a, g->ldq, b, g->b_offset + p * nr, g->x_scale + row0,
                         g->w_scale + p * nr, bias, tile, nr, g->accumulate);
                m2k_edge_tile_end(tile, nr, c, g->ldc, r, cols);
            }
            if (g->act != M2K_ACT_NONE)
                g->k->bias_act(c, g->ldc, (int)r, (int)cols, NULL, g->act);
        }
    }
}

void m2k_q8_gemm(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim, const float *x,
                 long lda, const void *packed, float *c, long ldc, const float *bias,
                 m2k_activation act, int accumulate) {
    if (m <= 0 || n <= 0) return;
    q8_header h;
    memcpy(&h, packed, sizeof h);
    if (h.magic != Q8_MAGIC || h.n != n || h.kdim != kdim) {
        fprintf(stderr,
                "m2k_q8_gemm: the packed weights are not an m2k_q8_pack blob for n = %ld, "
                "kdim = %ld (header: magic %#x, n %lld, kdim %lld)\n",
                n, kdim, h.magic, (long long)h.n, (long long)h.kdim);
        abort();
    }
    const m2k_q8_kernel *q = h.kernel;
    const int mr = q->mr, nr = q->nr;
    q8_layout l = layout_of(q, n, kdim);
    const uint8_t *base = packed;
    int threads = m2k_in_pool_task() ? 1 : m2k_pool_threads(pool);
    m2k_pool *run_on = threads > 1 ? pool : NULL;

    /* Scratch of the calling thread (slot 3; gemm.c and attention.c use 0–2): quantized rows,
     * padded to whole panels, their scales, and for packed-A kernels a row per worker. */
    long mpad = round_up(m, mr), kpad = h.kpad;
    long ldq = q->a_panels ? kpad * q->a_bytes : round_up(kpad * q->a_bytes, 64);
    size_t a_bytes = (size_t)round_up(mpad * ldq, 64);
    size_t scale_bytes = (size_t)round_up(mpad * 4, 64);
    size_t row_bytes = q->a_panels ? (size_t)(threads * kpad * q->a_bytes) : 0;
    uint8_t *scratch = (uint8_t *)m2k_thread_scratch(3, a_bytes + scale_bytes + row_bytes + 64);
    if (!scratch) {
        fprintf(stderr, "m2k_q8_gemm: out of memory for %ld × %ld quantized rows\n", m, kdim);
        abort();
    }
    quantize_job qj = {.q = q, .m = m, .mpad = mpad, .kdim = kdim, .kpad = kpad, .lda = lda,
                       .ldq = ldq, .x = x, .xq = scratch,
                       .x_scale = (float *)(scratch + a_bytes),
                       .rowbuf = scratch + a_bytes + scale_bytes};
    m2k_pool_run(run_on, (mpad + ROWS_PER_QUANTIZE_TASK - 1) / ROWS_PER_QUANTIZE_TASK,
                 quantize_task, &qj);

    gemm_job g = {.k = k, .q = q, .m = m, .n = n, .ldq = ldq, .ldc = ldc,
                  .groups = kpad / q->kgroup, .xq = scratch, .x_scale = qj.x_scale,
                  .w_scale = (const float *)(base + l.scales),
                  .b_offset = (const int32_t *)(base + l.offsets),
                  .panels = (const int8_t *)(base + l.panels), .bias = bias, .c = c, .act = act,
                  .accumulate = accumulate};
    g.grid = m2k_tile_grid_plan(m, n, mr, nr, threads);
    m2k_pool_run(run_on, g.grid.mblocks * g.grid.nchunks, gemm_task, &g);
}
