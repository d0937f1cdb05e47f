/* Backward drivers for the trainer (kernels.h, "backward"): GEMMs on the variant's sgemm
 * micro-kernels, row kernels from the variant's table, spread over the pool. Each restates
 * the forward it differentiates; ref/backward_reference.c is their oracle. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- dX = dY · W through packed weights ----------------------------------------------
 * forward: y = x · Wᵀ, W (n × kdim) packed as B (N = n, K = kdim) panels:
 *   bp[(p · kdim + c) · nr + j] = W[p · nr + j, c]
 * dx = dy · W is a GEMM with B' = W read as (K' = n, N' = kdim). Each task takes a slice of
 * dx's columns, re-lays W's columns of that slice out as B' panels in its scratch (n × slice
 * floats), and runs the GEMM for all rows on them: no second copy of W is ever whole. */

enum { DX_SLICE_PANELS = 8 };

typedef struct {
    const m2k_kernels *k;
    long m, n, kdim, lddy, lddx;
    const float *dy, *bp;
    float *dx;
    int accumulate;
} dx_job;

static void dx_task(void *ctx, long task, int worker) {
    (void)worker;
    const dx_job *j = ctx;
    const int nr = j->k->nr;
    const long c0 = task * DX_SLICE_PANELS * nr;
    const long cols = j->kdim - c0 < DX_SLICE_PANELS * nr ? j->kdim - c0 : DX_SLICE_PANELS * nr;
    const long panels = (cols + nr - 1) / nr, wpanels = (j->n + nr - 1) / nr;
    float *slice = m2k_thread_scratch(5, (size_t)(panels * j->n * nr) * sizeof(float));
    if (!slice) return;
    /* slice[(q · n + r) · nr + i] = W[r, c0 + q · nr + i] = bp[((r / nr) · kdim + c) · nr + r % nr] */
    for (long q = 0; q < panels; q++) {
        float *out = slice + q * j->n * nr;
        for (long r = 0; r < j->n; r++) {
            const float *src = j->bp + ((r / nr) * j->kdim) * nr + r % nr;
            for (int i = 0; i < nr; i++) {
                long c = c0 + q * nr + i;
                out[r * nr + i] = c < j->kdim ? src[c * nr] : 0.0f;
            }
        }
    }
    (void)wpanels;
    m2k_sgemm(j->k, NULL, j->m, cols, j->n, j->dy, j->lddy, slice, j->dx + c0, j->lddx, NULL,
              M2K_ACT_NONE, j->accumulate);
}

void m2k_sgemm_dx(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                  const float *dy, long lddy, const float *bp, float *dx, long lddx,
                  int accumulate) {
    if (m <= 0 || kdim <= 0) return;
    dx_job j = {.k = k, .m = m, .n = n, .kdim = kdim, .lddy = lddy, .lddx = lddx, .dy = dy,
                .bp = bp, .dx = dx, .accumulate = accumulate};
    const long slice = (long)DX_SLICE_PANELS * k->nr;
    m2k_pool_run(pool, (kdim + slice - 1) / slice, dx_task, &j);
}

/* ---- dW += dYᵀ · X, db += Σ dY ------------------------------------------------------
 * A GEMM over the rows: C(n × kdim) += A · B with A = dyᵀ (n × m) and B = x (K = m,
 * N = kdim). Rows go in chunks so the transposed dy and packed x stay small. */

enum { DW_ROWS = 512 };

void m2k_sgemm_dw(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                  const float *dy, long lddy, const float *x, long ldx, float *dw, float *db) {
    if (m <= 0) return;
    const long rows = m < DW_ROWS ? m : DW_ROWS;
    float *at = m2k_alloc(sizeof(float) * (size_t)(n * rows));
    float *bp = m2k_alloc(sizeof(float) * m2k_packed_b_floats(k->nr, kdim, rows));
    if (at && bp) {
        for (long r0 = 0; r0 < m; r0 += rows) {
            const long mr = m - r0 < rows ? m - r0 : rows;
            for (long j = 0; j < n; j++)
                for (long i = 0; i < mr; i++) at[j * mr + i] = dy[(r0 + i) * lddy + j];
            m2k_pack_b(k->nr, kdim, mr, x + r0 * ldx, ldx, M2K_B_KN, bp);
            m2k_sgemm(k, pool, n, kdim, mr, at, mr, bp, dw, kdim, NULL, M2K_ACT_NONE, 1);
        }
    }
    m2k_free(at);
    m2k_free(bp);
    if (db)
        for (long i = 0; i < m; i++) {
            const float *g = dy + i * lddy;
            for (long j = 0; j < n; j++) db[j] += g[j];
        }
}

/* ---- LayerNorm backward ---------------------------------------------------------------
 * Bands of rows per task; each task sums its dgamma/dbeta into its own slot, added up at the
 * end in task order (deterministic whatever the thread count). */

enum { LN_ROWS_PER_TASK = 64 };

typedef struct {
    const m2k_kernels *k;
    const float *x, *dy, *gamma;
    float *dx, *partial; /* partial: (tasks, 2, cols) */
    long ldx, lddy, lddx, rows, cols;
    float eps;
    int accumulate, want_gamma, want_beta;
} ln_job;

static void ln_task(void *ctx, long task, int worker) {
    (void)worker;
    const ln_job *j = ctx;
    const long r0 = task * LN_ROWS_PER_TASK;
    const long n = j->rows - r0 < LN_ROWS_PER_TASK ? j->rows - r0 : LN_ROWS_PER_TASK;
    float *dg = j->partial ? j->partial + task * 2 * j->cols : NULL;
    j->k->layernorm_backward(j->x + r0 * j->ldx, j->ldx, j->dy + r0 * j->lddy, j->lddy, j->gamma,
                             j->dx ? j->dx + r0 * j->lddx : NULL, j->lddx,
                             dg && j->want_gamma ? dg : NULL, dg && j->want_beta ? dg + j->cols : NULL,
                             n, j->cols, j->eps, j->accumulate);
}

void m2k_layernorm_backward_rows(const m2k_kernels *k, m2k_pool *pool, const float *x, long ldx,
                                 const float *dy, long lddy, const float *gamma, float *dx,
                                 long lddx, float *dgamma, float *dbeta, long rows, long cols,
                                 float eps, int accumulate) {
    if (rows <= 0) return;
    const long tasks = (rows + LN_ROWS_PER_TASK - 1) / LN_ROWS_PER_TASK;
    float *partial = NULL;
    if (dgamma || dbeta) {
        partial = calloc((size_t)(tasks * 2 * cols), sizeof(float));
        if (!partial) return;
    }
    ln_job j = {.k = k, .x = x, .dy = dy, .gamma = gamma, .dx = dx, .partial = partial,
                .ldx = ldx, .lddy = lddy, .lddx = lddx, .rows = rows, .cols = cols, .eps = eps,
                .accumulate = accumulate, .want_gamma = dgamma != NULL, .want_beta = dbeta != NULL};
    m2k_pool_run(pool, tasks, ln_task, &j);
    for (long t = 0; partial && t < tasks; t++)
        for (long c = 0; c < cols; c++) {
            if (dgamma) dgamma[c] += partial[t * 2 * cols + c];
            if (dbeta) dbeta[c] += partial[t * 2 * cols + cols + c];
        }
    free(partial);
}

/* ---- activations ------------------------------------------------------------------------ */

enum { ACT_CHUNK = 16384 };

typedef struct {
    const m2k_kernels *k;
    m2k_activation act;
    const float *x, *dy;
    float *dx;
    size_t n;
} act_job;

static void act_task(void *ctx, long task, int worker) {
    (void)worker;
    const act_job *j = ctx;
    size_t i0 = (size_t)task * ACT_CHUNK, n = j->n - i0 < ACT_CHUNK ? j->n - i0 : ACT_CHUNK;
    j->k->activation_backward(j->act, j->x + i0, j->dy + i0, j->dx + i0, n);
}

void m2k_activation_backward(const m2k_kernels *k, m2k_pool *pool, m2k_activation act,
                             const float *x, const float *dy, float *dx, size_t n) {
    act_job j = {.k = k, .act = act, .x = x, .dy = dy, .dx = dx, .n = n};
    m2k_pool_run(pool, (long)((n + ACT_CHUNK - 1) / ACT_CHUNK), act_task, &j);
}

/* ---- attention backward -----------------------------------------------------------------
 * One (sequence, head) per task, as the forward: P is recomputed from Q and K (never stored
 * between forward and backward), then
 *   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √d,  dQ = dS K,  dK = dSᵀ Q.
 * Scratch per thread: P and dS (q × t), one transpose (t × q), one packed panel set. */

typedef struct {
    const m2k_kernels *k;
    long tokens, queries, ld_qkv, ld_dout, ld_dqkv;
    int heads, head_dim, causal;
    const float *qkv, *dout;
    float *dqkv;
} attn_bwd_job;

static void transpose(const float *a, long rows, long cols, long lda, float *out) {
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) out[j * rows + i] = a[i * lda + j];
}

static void attn_bwd_task(void *ctx, long task, int worker) {
    (void)worker;
    const attn_bwd_job *j = ctx;
    const m2k_kernels *k = j->k;
    const long s = task / j->heads, t = j->tokens, q = j->queries, d = j->head_dim;
    const long width = (long)j->heads * d, off = (task % j->heads) * d;
    const float *base = j->qkv + s * t * j->ld_qkv + off;
    const float *qm = base, *km = base + width, *vm = base + 2 * width;
    const float *g = j->dout + s * q * j->ld_dout + off;
    float *gq = j->dqkv + s * t * j->ld_dqkv + off, *gk = gq + width, *gv = gq + 2 * width;
    const long big = t > d ? t : d;
    float *packed = m2k_thread_scratch(5, m2k_packed_b_floats(k->nr, big, big) * sizeof(float));
    float *p = m2k_thread_scratch(6, (size_t)(2 * q * t) * sizeof(float)), *dp = p + q * t;
    float *tr = m2k_thread_scratch(7, (size_t)(t * q) * sizeof(float));
    if (!packed || !p || !tr) return;
    const float scale = 1.0f / sqrtf((float)d);

    /* P = softmax(Q Kᵀ / √d) */
    m2k_pack_b(k->nr, t, d, km, j->ld_qkv, M2K_B_NK, packed);
    m2k_sgemm(k, NULL, q, t, d, qm, j->ld_qkv, packed, p, t, NULL, M2K_ACT_NONE, 0);
    k->softmax(p, q, t, t, scale, j->causal, 0);
    /* dP = dO Vᵀ */
    m2k_pack_b(k->nr, t, d, vm, j->ld_qkv, M2K_B_NK, packed);
    m2k_sgemm(k, NULL, q, t, d, g, j->ld_dout, packed, dp, t, NULL, M2K_ACT_NONE, 0);
    /* dV = Pᵀ dO */
    transpose(p, q, t, t, tr);
    m2k_pack_b(k->nr, d, q, g, j->ld_dout, M2K_B_KN, packed);
    m2k_sgemm(k, NULL, t, d, q, tr, q, packed, gv, j->ld_dqkv, NULL, M2K_ACT_NONE, 0);
    /* dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale, in dp */
    for (long i = 0; i < q; i++) {
        float *pr = p + i * t, *dr = dp + i * t, dot = 0;
        for (long c = 0; c < t; c++) dot += pr[c] * dr[c];
        for (long c = 0; c < t; c++) dr[c] = pr[c] * (dr[c] - dot) * scale;
    }
    /* dQ = dS K for the query rows; 0 below */
    m2k_pack_b(k->nr, d, t, km, j->ld_qkv, M2K_B_KN, packed);
    m2k_sgemm(k, NULL, q, d, t, dp, t, packed, gq, j->ld_dqkv, NULL, M2K_ACT_NONE, 0);
    for (long r = q; r < t; r++) memset(gq + r * j->ld_dqkv, 0, sizeof(float) * (size_t)d);
    /* dK = dSᵀ Q */
    transpose(dp, q, t, t, tr);
    m2k_pack_b(k->nr, d, q, qm, j->ld_qkv, M2K_B_KN, packed);
    m2k_sgemm(k, NULL, t, d, q, tr, q, packed, gk, j->ld_dqkv, NULL, M2K_ACT_NONE, 0);
}

void m2k_attention_backward(const m2k_kernels *k, m2k_pool *pool, long seqs, long tokens,
                            long queries, int heads, int head_dim, const float *qkv,
                            long ld_qkv, const float *dout, long ld_dout, float *dqkv,
                            long ld_dqkv, int causal) {
    if (queries > tokens) queries = tokens;
    attn_bwd_job j = {.k = k, .tokens = tokens, .queries = queries, .ld_qkv = ld_qkv,
                      .ld_dout = ld_dout, .ld_dqkv = ld_dqkv, .heads = heads,
                      .head_dim = head_dim, .causal = causal, .qkv = qkv, .dout = dout,
                      .dqkv = dqkv};
    m2k_pool_run(pool, seqs * heads, attn_bwd_task, &j);
}

/* ---- depthwise convolutions -------------------------------------------------------------
 * One task per band of channels over every position, so dx, dw and dbias of a channel are
 * written by one task only (no partial sums to merge). */

enum { DW_CHANNELS = 16 };

typedef struct {
    const float *x, *dy, *w;
    float *dx, *dw, *dbias;
    long clips, frames, tokens, height, width, channels;
} dwconv_bwd_job;

/* forward: y[b,t,j,c] = bias[c] + Σ_s w[s+1,c] · x[b,t+s,j,c] */
static void temporal_bwd_task(void *ctx, long task, int worker) {
    (void)worker;
    const dwconv_bwd_job *j = ctx;
    const long C = j->channels, plane = j->tokens * C, c0 = task * DW_CHANNELS;
    const long c1 = c0 + DW_CHANNELS < C ? c0 + DW_CHANNELS : C;
    float dw[3][DW_CHANNELS] = {{0}}, db[DW_CHANNELS] = {0};
    for (long b = 0; b < j->clips; b++)
        for (long t = 0; t < j->frames; t++) {
            const long frame = (b * j->frames + t) * plane;
            const int has_prev = t > 0, has_next = t + 1 < j->frames;
            for (long tok = 0; tok < j->tokens; tok++) {
                const long at = frame + tok * C;
                const float *g = j->dy + at, *xc = j->x + at;
                for (long c = c0; c < c1; c++) {
                    const long i = c - c0;
                    db[i] += g[c];
                    dw[1][i] += g[c] * xc[c];
                    if (has_prev) dw[0][i] += g[c] * xc[c - plane];
                    if (has_next) dw[2][i] += g[c] * xc[c + plane];
                    if (j->dx) { /* dx[t] = w0 · dy[t+1] + w1 · dy[t] + w2 · dy[t−1] */
                        float v = j->w[C + c] * g[c];
                        if (has_next) v += j->w[c] * g[c + plane];
                        if (has_prev) v += j->w[2 * C + c] * g[c - plane];
                        j->dx[at + c] = v;
                    }
                }
            }
        }
    for (long c = c0; c < c1; c++) {
        if (j->dbias) j->dbias[c] += db[c - c0];
        if (j->dw)
            for (int s = 0; s < 3; s++) j->dw[s * C + c] += dw[s][c - c0];
    }
}

void m2k_temporal_dwconv3_backward(m2k_pool *pool, const float *x, const float *dy, float *dx,
                                   long clips, long frames, long tokens, long channels,
                                   const float *w, float *dw, float *dbias) {
    dwconv_bwd_job j = {.x = x, .dy = dy, .w = w, .dx = dx, .dw = dw, .dbias = dbias,
                        .clips = clips, .frames = frames, .tokens = tokens, .channels = channels};
    m2k_pool_run(pool, (channels + DW_CHANNELS - 1) / DW_CHANNELS, temporal_bwd_task, &j);
}

/* forward: y[f,gy,gx,c] = bias[c] + Σ_{a,b} w[(a+1)·3+b+1, c] · x[f, gy+a, gx+b, c]
 * ⇒ dx[f,sy,sx,c] = Σ_{a,b} w[tap, c] · dy[f, sy−a, sx−b, c] */
static void spatial_bwd_task(void *ctx, long task, int worker) {
    (void)worker;
    const dwconv_bwd_job *j = ctx;
    const long C = j->channels, H = j->height, W = j->width, c0 = task * DW_CHANNELS;
    const long c1 = c0 + DW_CHANNELS < C ? c0 + DW_CHANNELS : C;
    float dw[9][DW_CHANNELS] = {{0}}, db[DW_CHANNELS] = {0};
    for (long f = 0; f < j->frames; f++) {
        const long frame = f * H * W * C;
        for (long gy = 0; gy < H; gy++)
            for (long gx = 0; gx < W; gx++) {
                const long at = frame + (gy * W + gx) * C;
                float acc[DW_CHANNELS] = {0};
                for (int a = -1; a <= 1; a++) {
                    const long ny = gy + a;
                    if (ny < 0 || ny >= H) continue;
                    for (int b = -1; b <= 1; b++) {
                        const long nx = gx + b;
                        if (nx < 0 || nx >= W) continue;
                        const long nb = frame + (ny * W + nx) * C;
                        const int tap = (a + 1) * 3 + (b + 1), flip = (1 - a) * 3 + (1 - b);
                        for (long c = c0; c < c1; c++) {
                            /* dw: output (gy,gx) reads x at (gy+a, gx+b) through tap */
                            dw[tap][c - c0] += j->dy[at + c] * j->x[nb + c];
                            /* dx at (gy,gx): output (gy−a', gx−b') reached it through tap' —
                             * with (a', b') = (−a, −b) the output is the neighbour nb */
                            acc[c - c0] += j->w[flip * C + c] * j->dy[nb + c];
                        }
                    }
                }
                for (long c = c0; c < c1; c++) {
                    db[c - c0] += j->dy[at + c];
                    if (j->dx) j->dx[at + c] = acc[c - c0];
                }
            }
    }
    for (long c = c0; c < c1; c++) {
        if (j->dbias) j->dbias[c] += db[c - c0];
        if (j->dw)
            for (int s = 0; s < 9; s++) j->dw[s * C + c] += dw[s][c - c0];
    }
}

void m2k_spatial_dwconv3x3_backward(m2k_pool *pool, const float *x, const float *dy, float *dx,
                                    long frames, long height, long width, long channels,
                                    const float *w, float *dw, float *dbias) {
    dwconv_bwd_job j = {.x = x, .dy = dy, .w = w, .dx = dx, .dw = dw, .dbias = dbias,
                        .frames = frames, .height = height, .width = width, .channels = channels};
    m2k_pool_run(pool, (channels + DW_CHANNELS - 1) / DW_CHANNELS, spatial_bwd_task, &j);
}
