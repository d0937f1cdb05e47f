/* The bf16 GEMM driver (kernels.h, bf16 section). Two paths, chosen at packing:
 *
 * native (the table's bf16_kernel runs on this CPU: AVX-512 BF16)
 *   1. x is rounded to bf16 once per call, rows in parallel on the pool, into the calling
 *      thread's scratch: rows of kpad elements (K padded to even with zeros), padded to
 *      whole mr-row panels with zero rows;
 *   2. tasks over (M block × N chunk) from the shared tile grid, as core/gemm.c: K blocks
 *      of KC → N panels → M panels → the kernel's mr × nr tile; the fp32 tile goes to C
 *      between K blocks. Bias and activation follow on the last K block through the
 *      table's bias_act; edge tiles go through a local buffer.
 * portable (every other table or CPU)
 *   W is rounded to bf16 and widened back to fp32 at packing, in m2k_pack_b's panels for
 *   the table's sgemm kernel; x is rounded the same way per call into scratch, then
 *   m2k_sgemm does the rest. The products of bf16 values are exact in fp32, so this is the
 *   same arithmetic as the native path up to the order of the fp32 sums.
 *
 * Packed blob: a 64-byte header naming the path (the kernel, or NULL) and the shape, then
 * the panels: native, panel p holds bf16 W[p·nr + j, 2g + t] at (g · nr + j) · 2 + t, zero
 * past N and K; portable, m2k_pack_b's fp32 panels for the table's nr.
 *
 * Scratch: slot 3 of the calling thread (the int8 driver's; the two never nest). */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KC = 512, ROWS_PER_CONVERT_TASK = 16, SCRATCH_SLOT = 3 };

#define BF16_MAGIC 0x3631424Du /* "MB16" in memory */

typedef struct {
    uint32_t magic;
    int32_t nr;                    /* panel width */
    const m2k_bf16_kernel *kernel; /* NULL: portable fp32 panels */
    int64_t n, kdim, kpad;
    char pad[64 - 2 * sizeof(uint32_t) - sizeof(void *) - 3 * sizeof(int64_t)];
} bf16_header;

_Static_assert(sizeof(bf16_header) == 64, "the panels start 64-byte aligned");

static long round_up(long v, long to) { return (v + to - 1) / to * to; }

static const m2k_bf16_kernel *native_kernel(const m2k_kernels *k) {
    return k->bf16_kernel && k->bf16_kernel->runs() ? k->bf16_kernel : NULL;
}

int m2k_bf16_native(const m2k_kernels *k) { return native_kernel(k) != NULL; }

size_t m2k_bf16_packed_bytes(const m2k_kernels *k, long n, long kdim) {
    const m2k_bf16_kernel *q = native_kernel(k);
    if (q)
        return sizeof(bf16_header) +
               (size_t)round_up(n, q->nr) * (size_t)round_up(kdim, 2) * sizeof(uint16_t);
    return sizeof(bf16_header) + m2k_packed_b_floats(k->nr, n, kdim) * sizeof(float);
}

void m2k_bf16_pack(const m2k_kernels *k, long n, long kdim, const float *w, void *packed) {
    const m2k_bf16_kernel *q = native_kernel(k);
    bf16_header h = {.magic = BF16_MAGIC, .nr = q ? q->nr : k->nr, .kernel = q, .n = n,
                     .kdim = kdim, .kpad = q ? round_up(kdim, 2) : kdim};
    memcpy(packed, &h, sizeof h);
    uint8_t *panels = (uint8_t *)packed + sizeof h;
    if (!q) {
        float *fp = (float *)panels;
        m2k_pack_b(k->nr, n, kdim, w, kdim, M2K_B_NK, fp);
        size_t count = m2k_packed_b_floats(k->nr, n, kdim);
        for (size_t i = 0; i < count; i++) fp[i] = m2k_bf16_to_float(m2k_bf16_from_float(fp[i]));
        return;
    }
    const int nr = q->nr;
    uint16_t *dst = (uint16_t *)panels;
    for (long p = 0; p < round_up(n, nr) / nr; p++)
        for (long g = 0; g < h.kpad / 2; g++)
            for (int j = 0; j < nr; j++)
                for (int t = 0; t < 2; t++) {
                    long col = p * nr + j, kk = 2 * g + t;
                    *dst++ = col < n && kk < kdim ? m2k_bf16_from_float(w[col * kdim + kk]) : 0;
                }
}

/* ---- x rounded to bf16, rows in parallel ----------------------------------------------- */

typedef struct {
    const m2k_bf16_kernel *q; /* NULL: round to fp32 values (portable path) */
    long m, mpad, kdim, kpad, lda, ldq;
    const float *x;
    void *out; /* native: (mpad, ldq) bf16; portable: (m, ldq) fp32 */
} convert_job;

/* dst = src rounded to bf16 and widened back: m2k_bf16_from_float without branches, so
 * that the loop vectorizes. */
static void round_row(const float *src, float *dst, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, sizeof u);
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        uint32_t quiet_nan = (u | 0x00400000u) & 0xffff0000u;
        uint32_t r = (u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
        memcpy(dst + i, &r, sizeof r);
    }
}

static void convert_task(void *ctx, long task, int worker) {
    (void)worker;
    const convert_job *j = ctx;
    long r1 = (task + 1) * ROWS_PER_CONVERT_TASK;
    if (r1 > j->mpad) r1 = j->mpad;
    for (long r = task * ROWS_PER_CONVERT_TASK; r < r1; r++) {
        if (!j->q) {
            const float *src = j->x + r * j->lda;
            float *dst = (float *)j->out + r * j->ldq;
            round_row(src, dst, j->kdim);
        } else {
            uint16_t *dst = (uint16_t *)j->out + r * j->ldq;
            if (r < j->m) j->q->convert(j->x + r * j->lda, j->kdim, j->kpad, dst);
            else memset(dst, 0, (size_t)j->kpad * sizeof(uint16_t)); /* padding rows */
        }
    }
}

/* ---- native tiles ----------------------------------------------------------------------- */

typedef struct {
    const m2k_kernels *k;
    const m2k_bf16_kernel *q;
    long m, n, kpad, ldq, ldc;
    m2k_tile_grid grid;
    const uint16_t *xq, *panels;
    const float *bias;
    float *c;
    m2k_activation act;
    int accumulate;
} gemm_job;

static void gemm_task(void *ctx, long task, int worker) {
    (void)worker;
    const gemm_job *g = ctx;
    const m2k_bf16_kernel *q = g->q;
    const int mr = q->mr, nr = q->nr;
    const m2k_tile_task t = m2k_tile_grid_task(&g->grid, task, g->m);
    const long m0 = t.m0, rows = t.rows, p0 = t.p0, p1 = t.p1;
    long mpanels = (rows + mr - 1) / mr;
    float tile[32 * 64] __attribute__((aligned(64)));

    for (long k0 = 0; k0 < g->kpad; k0 += KC) {
        long kc = g->kpad - k0 < KC ? g->kpad - k0 : KC; /* even: kpad and KC are */
        int last = k0 + kc >= g->kpad;
        int load = k0 > 0 || g->accumulate;
        for (long p = p0; p < p1; p++) {
            const uint16_t *b = g->panels + (p * g->kpad + k0) * nr;
            long cols = g->n - p * nr < nr ? g->n - p * nr : nr;
            for (long ir = 0; ir < mpanels; ir++) {
                long row0 = m0 + ir * mr;
                long r = rows - ir * mr < mr ? rows - ir * mr : mr;
                const uint16_t *a = g->xq + row0 * g->ldq + k0; /* padded to whole panels */
                float *c = g->c + row0 * g->ldc + p * nr;
                if (r == mr && cols == nr) {
                    q->micro(kc / 2, a, g->ldq, b, c, g->ldc, load);
                } else {
                    m2k_edge_tile_begin(tile, nr, c, g->ldc, r, cols, load);
                    q->micro(kc / 2, a, g->ldq, b, tile, nr, load);
                    m2k_edge_tile_end(tile, nr, c, g->ldc, r, cols);
                }
                if (last && (g->bias || g->act != M2K_ACT_NONE))
                    g->k->bias_act(c, g->ldc, (int)r, (int)cols, g->bias ? g->bias + p * nr : NULL,
                                   g->act);
            }
        }
    }
}

void m2k_bf16_gemm(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                   const float *x, long lda, const void *packed, float *c, long ldc,
                   const float *bias, m2k_activation act, int accumulate) {
    if (m <= 0 || n <= 0) return;
    bf16_header h;
    memcpy(&h, packed, sizeof h);
    int nr = h.kernel ? h.kernel->nr : k->nr;
    if (h.magic != BF16_MAGIC || h.n != n || h.kdim != kdim || h.nr != nr) {
        fprintf(stderr,
                "m2k_bf16_gemm: the packed weights are not an m2k_bf16_pack blob for n = %ld, "
                "kdim = %ld, table %s (header: magic %#x, n %lld, kdim %lld, nr %d)\n",
                n, kdim, k->name, h.magic, (long long)h.n, (long long)h.kdim, h.nr);
        abort();
    }
    const void *panels = (const uint8_t *)packed + sizeof h;
    if (kdim <= 0) { /* no products: m2k_sgemm's C = act(bias) (or C += bias) */
        m2k_sgemm(k, pool, m, n, 0, x, lda, panels, c, ldc, bias, act, accumulate);
        return;
    }
    const m2k_bf16_kernel *q = h.kernel;
    int threads = m2k_in_pool_task() ? 1 : m2k_pool_threads(pool);
    m2k_pool *run_on = threads > 1 ? pool : NULL;

    long mpad = q ? round_up(m, q->mr) : m;
    long ldq = q ? round_up(h.kpad, 32) : round_up(kdim, 16); /* 64-byte rows */
    size_t bytes = (size_t)mpad * (size_t)ldq * (q ? sizeof(uint16_t) : sizeof(float));
    void *xq = m2k_thread_scratch(SCRATCH_SLOT, bytes);
    if (!xq) {
        fprintf(stderr, "m2k_bf16_gemm: out of memory for %ld × %ld bf16 rows\n", m, kdim);
        abort();
    }
    convert_job cj = {.q = q, .m = m, .mpad = mpad, .kdim = kdim, .kpad = h.kpad, .lda = lda,
                      .ldq = ldq, .x = x, .out = xq};
    m2k_pool_run(run_on, (mpad + ROWS_PER_CONVERT_TASK - 1) / ROWS_PER_CONVERT_TASK,
                 convert_task, &cj);

    if (!q) {
        m2k_sgemm(k, pool, m, n, kdim, xq, ldq, panels, c, ldc, bias, act, accumulate);
        return;
    }
    gemm_job g = {.k = k, .q = q, .m = m, .n = n, .kpad = h.kpad, .ldq = ldq, .ldc = ldc,
                  .xq = xq, .panels = panels, .bias = bias, .c = c, .act = act,
                  .accumulate = accumulate};
    g.grid = m2k_tile_grid_plan(m, n, q->mr, nr, threads);
    m2k_pool_run(run_on, g.grid.mblocks * g.grid.nchunks, gemm_task, &g);
}
