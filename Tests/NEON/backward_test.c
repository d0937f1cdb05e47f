/* The training (backward) kernels of the NEON table against the scalar oracle, built for
 * AArch64 and run under qemu by scripts/test-neon.sh. Checks:
 *   - k->activation_backward (QuickGELU, GELU, identity) against m2k_ref_activation_backward:
 *     lengths around the 4-float vector, misaligned starts, dx == dy, far-out inputs where
 *     exp under- and overflows;
 *   - k->layernorm_backward against m2k_ref_layernorm_backward: odd widths, strided rows, a
 *     mean 1000× the spread, dx written / accumulated / NULL, dγ and dβ accumulated or NULL;
 *   - the drivers on the NEON table, a pool of 2 and none: m2k_sgemm_dx (weights packed by
 *     m2k_pack_b with nr 12), m2k_sgemm_dw (past its 512-row chunk), m2k_layernorm_backward_rows
 *     (past its 64-row task), m2k_activation_backward (past its 16384-float chunk),
 *     m2k_attention_backward (causal and not, queries < tokens and == tokens), and the
 *     temporal / spatial depthwise convolutions' backward with NULL outputs.
 * Everything a kernel should not touch (row padding, outputs passed as NULL) must come back
 * bit for bit. A value passes when |got − want| ≤ atol + rtol · scale:
 *   activations        atol 1e-6, rtol 1e-6 of |want| (exp within 3 ulp, erfc 2e-6 relative)
 *   layernorm dx       rtol 2e-6 of max(1, the row's largest |want|): fp32 statistics
 *   dγ, dβ             rtol 5e-6 of max(1, the largest |want|): fp32 sums over the rows
 *   GEMM-shaped, convs rtol 1e-5 of max(1, the row's largest |want|): fp32 sums of products
 * Prints one line per check and closes with "N passed, M failed"; exits 1 on any failure. */
#include "kernels.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEON_TEST_SEED 0xD1B54A32D192ED03ull
#include "harness.h"

/* ---- data --------------------------------------------------------------------------- */

static float *randoms(size_t n, float lo, float hi) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) { perror("malloc"); exit(2); }
    for (size_t i = 0; i < n; i++) p[i] = uniform(lo, hi);
    return p;
}

static float *copy_of(const float *x, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) { perror("malloc"); exit(2); }
    memcpy(p, x, n * sizeof(float));
    return p;
}

/* Marks the gaps between rows (columns cols..ld) so that a stray store shows. */
static void mark_padding(float *x, long rows, long cols, long ld) {
    for (long r = 0; r < rows; r++)
        for (long j = cols; j < ld; j++) x[r * ld + j] = 1957.0f + (float)j;
}

/* ---- comparison --------------------------------------------------------------------- */

typedef struct {
    double atol, rtol;
    int per_row; /* scale: max(1, the row's largest |want|); else |want| */
} tolerance;

/* Compares rows × cols values (row stride ld); the padding past cols must be equal bit for
 * bit. Reports one line with the largest error, or the first mismatch. */
static int compare(const char *label, const float *got, const float *want, long rows, long cols,
                   long ld, tolerance tol) {
    double max_err = 0, max_ratio = 0;
    for (long r = 0; r < rows; r++) {
        double row_max = 1;
        for (long j = 0; j < cols; j++)
            if (isfinite(want[r * ld + j]) && fabs(want[r * ld + j]) > row_max)
                row_max = fabs(want[r * ld + j]);
        for (long j = 0; j < ld; j++) {
            long i = r * ld + j;
            float g = got[i], w = want[i];
            if (j >= cols) {
                if (memcmp(&g, &w, sizeof g) != 0) {
                    report(0, "%s: padding [%ld][%ld] overwritten (%g)", label, r, j, g);
                    return 0;
                }
                continue;
            }
            if (isnan(w) && isnan(g)) continue;
            if (isinf(w) && g == w) continue;
            double err = fabs((double)g - (double)w);
            double bound = tol.atol + tol.rtol * (tol.per_row ? row_max : fabs((double)w));
            if (!(err <= bound)) {
                report(0, "%s: [%ld][%ld] got %.9g want %.9g (|err| %.3g > tol %.3g)", label, r,
                       j, g, w, err, bound);
                return 0;
            }
            if (err > max_err) max_err = err;
            if (bound > 0 && err / bound > max_ratio) max_ratio = err / bound;
        }
    }
    report(1, "%s: max |err| %.3g (%.2f of tol)", label, max_err, max_ratio);
    return 1;
}

/* An output the call was given NULL for (or never writes): untouched, bit for bit. */
static void compare_exact(const char *label, const float *got, const float *want, size_t n) {
    report(memcmp(got, want, n * sizeof(float)) == 0, "%s: untouched", label);
}

static const tolerance ACTIVATION = {1e-6, 1e-6, 0};
static const tolerance LAYERNORM_DX = {0, 2e-6, 1};
static const tolerance PARAMETER_SUM = {0, 5e-6, 1};
static const tolerance PRODUCT_SUM = {0, 1e-5, 1};

static const char *act_name(m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return "quickgelu";
    case M2K_ACT_GELU: return "gelu";
    default: return "none";
    }
}

static const char *const pool_names[] = {"no pool", "2 threads"};

/* ---- dispatch ----------------------------------------------------------------------- */

static const m2k_kernels *check_dispatch(void) {
    const m2k_kernels *k = m2k_active();
    report(k && strcmp(k->name, "neon") == 0, "dispatch: active variant is \"%s\" (want \"neon\")",
           k ? k->name : "NULL");
    if (!k || strcmp(k->name, "neon") != 0) return NULL;
    report(k->layernorm_backward != m2k_ref_layernorm_backward &&
               k->activation_backward != m2k_ref_activation_backward,
           "dispatch: the NEON table has its own layernorm_backward and activation_backward");
    return k;
}

/* ---- row kernels ---------------------------------------------------------------------- */

static void check_activation(const m2k_kernels *k, m2k_activation act, size_t n,
                             size_t misalign, float range) {
    float *x = randoms(n + misalign, -range, range), *dy = randoms(n + misalign, -2.0f, 2.0f);
    static const float far[] = {-1e30f, -100.0f, -60.0f, -20.0f, 20.0f, 60.0f, 100.0f, 1e30f};
    for (size_t i = 0; i < sizeof far / sizeof *far && 5 * i < n; i++) x[misalign + 5 * i] = far[i];
    float *want = randoms(n + misalign, 0, 1), *got = copy_of(want, n + misalign);
    m2k_ref_activation_backward(act, x + misalign, dy + misalign, want + misalign, n);
    k->activation_backward(act, x + misalign, dy + misalign, got + misalign, n);
    char label[128];
    snprintf(label, sizeof label, "activation_backward %s n=%zu%s", act_name(act), n,
             misalign ? " misaligned" : "");
    compare(label, got + misalign, want + misalign, 1, (long)n, (long)n, ACTIVATION);
    /* dx == dy: the trainer overwrites the upstream gradient in place */
    float *in_place = copy_of(dy, n + misalign);
    k->activation_backward(act, x + misalign, in_place + misalign, in_place + misalign, n);
    snprintf(label, sizeof label, "activation_backward %s n=%zu%s dx == dy", act_name(act), n,
             misalign ? " misaligned" : "");
    compare(label, in_place + misalign, want + misalign, 1, (long)n, (long)n, ACTIVATION);
    free(x); free(dy); free(want); free(got); free(in_place);
}

enum { DX_NONE, DX_WRITE, DX_ACCUMULATE };

typedef void (*ln_backward_fn)(void *ctx, const float *x, long ldx, const float *dy, long lddy,
                               const float *gamma, float *dx, long lddx, float *dgamma,
                               float *dbeta, long rows, long cols, float eps, int accumulate);

static void table_ln(void *ctx, const float *x, long ldx, const float *dy, long lddy,
                     const float *gamma, float *dx, long lddx, float *dgamma, float *dbeta,
                     long rows, long cols, float eps, int accumulate) {
    const m2k_kernels *k = ctx;
    k->layernorm_backward(x, ldx, dy, lddy, gamma, dx, lddx, dgamma, dbeta, rows, cols, eps,
                          accumulate);
}

typedef struct { const m2k_kernels *k; m2k_pool *pool; } driver_ctx;

static void driver_ln(void *ctx, const float *x, long ldx, const float *dy, long lddy,
                      const float *gamma, float *dx, long lddx, float *dgamma, float *dbeta,
                      long rows, long cols, float eps, int accumulate) {
    const driver_ctx *d = ctx;
    m2k_layernorm_backward_rows(d->k, d->pool, x, ldx, dy, lddy, gamma, dx, lddx, dgamma, dbeta,
                                rows, cols, eps, accumulate);
}

/* One shape and output set through `fn`, against the reference from the same buffers. */
static void check_layernorm(const char *what, ln_backward_fn fn, void *ctx, long rows, long cols,
                            float mean, float spread, int dx_mode, int want_gamma,
                            int want_beta) {
    const long ldx = cols + 3, lddy = cols + 1, lddx = cols + 2;
    float *x = randoms((size_t)(rows * ldx), mean - spread, mean + spread);
    float *dy = randoms((size_t)(rows * lddy), -1.0f, 1.0f);
    float *gamma = randoms((size_t)cols, 0.5f, 1.5f);
    float *dx_want = randoms((size_t)(rows * lddx), -1.0f, 1.0f);
    mark_padding(dx_want, rows, cols, lddx);
    float *g_want = randoms((size_t)cols, -1.0f, 1.0f);
    float *b_want = randoms((size_t)cols, -1.0f, 1.0f);
    float *dx_got = copy_of(dx_want, (size_t)(rows * lddx));
    float *g_got = copy_of(g_want, (size_t)cols), *b_got = copy_of(b_want, (size_t)cols);
    const int acc = dx_mode == DX_ACCUMULATE;
    m2k_ref_layernorm_backward(x, ldx, dy, lddy, gamma, dx_mode ? dx_want : NULL, lddx,
                               want_gamma ? g_want : NULL, want_beta ? b_want : NULL, rows, cols,
                               1e-5f, acc);
    fn(ctx, x, ldx, dy, lddy, gamma, dx_mode ? dx_got : NULL, lddx, want_gamma ? g_got : NULL,
       want_beta ? b_got : NULL, rows, cols, 1e-5f, acc);
    static const char *const modes[] = {"dx NULL", "dx", "dx accumulated"};
    char label[200];
    snprintf(label, sizeof label, "%s %ldx%ld mean %+g spread %g %s%s%s", what, rows, cols, mean,
             spread, modes[dx_mode], want_gamma ? ", dgamma" : ", dgamma NULL",
             want_beta ? ", dbeta" : ", dbeta NULL");
    char part[240];
    snprintf(part, sizeof part, "%s: dx", label);
    if (dx_mode) compare(part, dx_got, dx_want, rows, cols, lddx, LAYERNORM_DX);
    else compare_exact(part, dx_got, dx_want, (size_t)(rows * lddx));
    snprintf(part, sizeof part, "%s: dgamma", label);
    if (want_gamma) compare(part, g_got, g_want, 1, cols, cols, PARAMETER_SUM);
    else compare_exact(part, g_got, g_want, (size_t)cols);
    snprintf(part, sizeof part, "%s: dbeta", label);
    if (want_beta) compare(part, b_got, b_want, 1, cols, cols, PARAMETER_SUM);
    else compare_exact(part, b_got, b_want, (size_t)cols);
    free(x); free(dy); free(gamma); free(dx_want); free(g_want); free(b_want);
    free(dx_got); free(g_got); free(b_got);
}

/* ---- drivers ---------------------------------------------------------------------------- */

static void check_sgemm_dx(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim) {
    const long lddy = n + 3, lddx = kdim + 2;
    float *dy = randoms((size_t)(m * lddy), -1.0f, 1.0f);
    float *w = randoms((size_t)(n * kdim), -1.0f, 1.0f); /* (out = n, in = kdim) */
    float *bp = m2k_alloc(m2k_packed_b_floats(k->nr, n, kdim) * sizeof(float));
    m2k_pack_b(k->nr, n, kdim, w, kdim, M2K_B_NK, bp);
    float *dx0 = randoms((size_t)(m * lddx), -1.0f, 1.0f);
    mark_padding(dx0, m, kdim, lddx);
    for (int acc = 0; acc < 2; acc++) {
        float *want = copy_of(dx0, (size_t)(m * lddx));
        m2k_ref_sgemm_dx(m, n, kdim, dy, lddy, w, kdim, want, lddx, acc);
        for (int p = 0; p < 2; p++) {
            float *got = copy_of(dx0, (size_t)(m * lddx));
            m2k_sgemm_dx(k, p ? pool : NULL, m, n, kdim, dy, lddy, bp, got, lddx, acc);
            char label[128];
            snprintf(label, sizeof label, "sgemm_dx %ldx%ldx%ld%s %s", m, n, kdim,
                     acc ? " accumulate" : "", pool_names[p]);
            compare(label, got, want, m, kdim, lddx, PRODUCT_SUM);
            free(got);
        }
        free(want);
    }
    free(dy); free(w); m2k_free(bp); free(dx0);
}

static void check_sgemm_dw(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim) {
    const long lddy = n + 3, ldx = kdim + 1;
    float *dy = randoms((size_t)(m * lddy), -1.0f, 1.0f);
    float *x = randoms((size_t)(m * ldx), -1.0f, 1.0f);
    float *dw0 = randoms((size_t)(n * kdim), -1.0f, 1.0f), *db0 = randoms((size_t)n, -1.0f, 1.0f);
    float *dw_want = copy_of(dw0, (size_t)(n * kdim)), *db_want = copy_of(db0, (size_t)n);
    m2k_ref_sgemm_dw(m, n, kdim, dy, lddy, x, ldx, dw_want, db_want);
    for (int p = 0; p < 2; p++)
        for (int with_db = 0; with_db < 2; with_db++) {
            float *dw = copy_of(dw0, (size_t)(n * kdim)), *db = copy_of(db0, (size_t)n);
            m2k_sgemm_dw(k, p ? pool : NULL, m, n, kdim, dy, lddy, x, ldx, dw, with_db ? db : NULL);
            char label[128];
            snprintf(label, sizeof label, "sgemm_dw %ldx%ldx%ld %s%s: dW", m, n, kdim,
                     pool_names[p], with_db ? "" : " db NULL");
            compare(label, dw, dw_want, n, kdim, kdim, PRODUCT_SUM);
            snprintf(label, sizeof label, "sgemm_dw %ldx%ldx%ld %s%s: db", m, n, kdim,
                     pool_names[p], with_db ? "" : " db NULL");
            if (with_db) compare(label, db, db_want, 1, n, n, PRODUCT_SUM);
            else compare_exact(label, db, db0, (size_t)n);
            free(dw); free(db);
        }
    free(dy); free(x); free(dw0); free(db0); free(dw_want); free(db_want);
}

static void check_activation_driver(const m2k_kernels *k, m2k_pool *pool, size_t n) {
    float *x = randoms(n, -8.0f, 8.0f), *dy = randoms(n, -2.0f, 2.0f);
    float *want = malloc(n * sizeof(float));
    if (!want) { perror("malloc"); exit(2); }
    for (m2k_activation act = M2K_ACT_NONE; act <= M2K_ACT_GELU; act++) {
        m2k_ref_activation_backward(act, x, dy, want, n);
        for (int p = 0; p < 2; p++) {
            float *got = copy_of(dy, n);
            m2k_activation_backward(k, p ? pool : NULL, act, x, got, got, n);
            char label[128];
            snprintf(label, sizeof label, "m2k_activation_backward %s n=%zu dx == dy %s",
                     act_name(act), n, pool_names[p]);
            compare(label, got, want, 1, (long)n, (long)n, ACTIVATION);
            free(got);
        }
    }
    free(x); free(dy); free(want);
}

static void check_attention(const m2k_kernels *k, m2k_pool *pool, long seqs, long tokens,
                            long queries, int heads, int head_dim, int causal) {
    const long width = (long)heads * head_dim;
    const long ld_qkv = 3 * width + 4, ld_dout = width + 3, ld_dqkv = 3 * width + 2;
    float *qkv = randoms((size_t)(seqs * tokens * ld_qkv), -2.0f, 2.0f);
    float *dout = randoms((size_t)(seqs * queries * ld_dout), -1.0f, 1.0f);
    float *want = randoms((size_t)(seqs * tokens * ld_dqkv), 0, 1);
    mark_padding(want, seqs * tokens, 3 * width, ld_dqkv);
    float *got0 = copy_of(want, (size_t)(seqs * tokens * ld_dqkv));
    m2k_ref_attention_backward(seqs, tokens, queries, heads, head_dim, qkv, ld_qkv, dout, ld_dout,
                               want, ld_dqkv, causal);
    for (int p = 0; p < 2; p++) {
        float *got = copy_of(got0, (size_t)(seqs * tokens * ld_dqkv));
        m2k_attention_backward(k, p ? pool : NULL, seqs, tokens, queries, heads, head_dim, qkv,
                               ld_qkv, dout, ld_dout, got, ld_dqkv, causal);
        char label[160];
        snprintf(label, sizeof label,
                 "attention_backward seqs %ld tokens %ld queries %ld heads %d head_dim %d%s %s",
                 seqs, tokens, queries, heads, head_dim, causal ? " causal" : "", pool_names[p]);
        compare(label, got, want, seqs * tokens, 3 * width, ld_dqkv, PRODUCT_SUM);
        free(got);
    }
    free(qkv); free(dout); free(want); free(got0);
}

/* Temporal (taps 3, shape clips × frames × tokens) or spatial (taps 9, frames × h × w). */
static void check_dwconv(m2k_pool *pool, int taps, long a, long b, long c, long channels) {
    const long positions = a * b * c, count = positions * channels;
    float *x = randoms((size_t)count, -1.0f, 1.0f), *dy = randoms((size_t)count, -1.0f, 1.0f);
    float *w = randoms((size_t)(taps * channels), -1.0f, 1.0f);
    float *dx0 = randoms((size_t)count, -1.0f, 1.0f);
    float *dw0 = randoms((size_t)(taps * channels), -1.0f, 1.0f);
    float *db0 = randoms((size_t)channels, -1.0f, 1.0f);
    static const struct { int dx, dw, db; const char *name; } outputs[] = {
        {1, 1, 1, "dx, dw, dbias"}, {0, 1, 1, "dx NULL"}, {1, 0, 0, "dw, dbias NULL"},
    };
    for (size_t o = 0; o < sizeof outputs / sizeof *outputs; o++) {
        float *dx_want = copy_of(dx0, (size_t)count);
        float *dw_want = copy_of(dw0, (size_t)(taps * channels));
        float *db_want = copy_of(db0, (size_t)channels);
        float *dxp = outputs[o].dx ? dx_want : NULL, *dwp = outputs[o].dw ? dw_want : NULL;
        float *dbp = outputs[o].db ? db_want : NULL;
        if (taps == 3)
            m2k_ref_temporal_dwconv3_backward(x, dy, dxp, a, b, c, channels, w, dwp, dbp);
        else
            m2k_ref_spatial_dwconv3x3_backward(x, dy, dxp, a, b, c, channels, w, dwp, dbp);
        for (int p = 0; p < 2; p++) {
            float *dx = copy_of(dx0, (size_t)count), *dw = copy_of(dw0, (size_t)(taps * channels));
            float *db = copy_of(db0, (size_t)channels);
            dxp = outputs[o].dx ? dx : NULL;
            dwp = outputs[o].dw ? dw : NULL;
            dbp = outputs[o].db ? db : NULL;
            if (taps == 3)
                m2k_temporal_dwconv3_backward(p ? pool : NULL, x, dy, dxp, a, b, c, channels, w,
                                              dwp, dbp);
            else
                m2k_spatial_dwconv3x3_backward(p ? pool : NULL, x, dy, dxp, a, b, c, channels, w,
                                               dwp, dbp);
            char label[160], part[180];
            snprintf(label, sizeof label, "%s %ldx%ldx%ldx%ld %s %s",
                     taps == 3 ? "temporal_dwconv3_backward" : "spatial_dwconv3x3_backward", a,
                     b, c, channels, outputs[o].name, pool_names[p]);
            snprintf(part, sizeof part, "%s: dx", label);
            compare(part, dx, dx_want, positions, channels, channels, PRODUCT_SUM);
            snprintf(part, sizeof part, "%s: dw", label);
            compare(part, dw, dw_want, taps, channels, channels, PRODUCT_SUM);
            snprintf(part, sizeof part, "%s: dbias", label);
            compare(part, db, db_want, 1, channels, channels, PRODUCT_SUM);
            free(dx); free(dw); free(db);
        }
        free(dx_want); free(dw_want); free(db_want);
    }
    free(x); free(dy); free(w); free(dx0); free(dw0); free(db0);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const m2k_kernels *k = check_dispatch();
    if (!k) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    m2k_pool *pool = m2k_pool_create(2);
    if (!pool) { perror("m2k_pool_create"); return 2; }

    const size_t sizes[] = {1, 3, 4, 5, 7, 8, 17, 1000};
    for (m2k_activation act = M2K_ACT_NONE; act <= M2K_ACT_GELU; act++)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
            check_activation(k, act, sizes[i], i % 2, 8.0f);

    static const struct { long rows, cols; float mean, spread; } ln_shapes[] = {
        {1, 1, 0, 1}, {3, 3, 0, 2}, {5, 13, 0.5f, 2}, {4, 197, -3, 2}, {3, 768, 0, 1},
        {4, 768, 1000, 1}, /* mean ≫ spread: the float statistics must keep the mean unrounded */
    };
    static const struct { int dx, gamma, beta; } ln_outputs[] = {
        {DX_WRITE, 1, 1}, {DX_ACCUMULATE, 1, 1}, {DX_ACCUMULATE, 0, 1}, {DX_WRITE, 1, 0},
        {DX_NONE, 1, 1},
    };
    for (size_t s = 0; s < sizeof ln_shapes / sizeof *ln_shapes; s++)
        for (size_t o = 0; o < sizeof ln_outputs / sizeof *ln_outputs; o++)
            check_layernorm("layernorm_backward", table_ln, (void *)k, ln_shapes[s].rows,
                            ln_shapes[s].cols, ln_shapes[s].mean, ln_shapes[s].spread,
                            ln_outputs[o].dx, ln_outputs[o].gamma, ln_outputs[o].beta);
    for (int p = 0; p < 2; p++) {
        driver_ctx d = {k, p ? pool : NULL};
        char what[64];
        snprintf(what, sizeof what, "m2k_layernorm_backward_rows %s", pool_names[p]);
        check_layernorm(what, driver_ln, &d, 150, 45, 0.3f, 2, DX_ACCUMULATE, 1, 1);
        check_layernorm(what, driver_ln, &d, 70, 197, 100, 0.1f, DX_WRITE, 1, 0);
    }

    check_activation_driver(k, pool, 40000);

    check_sgemm_dx(k, pool, 37, 45, 70);
    check_sgemm_dx(k, pool, 200, 33, 300); /* kdim past one 8-panel slice, m past one M block */
    check_sgemm_dw(k, pool, 37, 45, 70);
    check_sgemm_dw(k, pool, 600, 9, 20);   /* m past the 512-row chunk */

    for (int causal = 0; causal < 2; causal++) {
        check_attention(k, pool, 2, 13, 13, 3, 8, causal);
        check_attention(k, pool, 2, 13, 5, 3, 8, causal);
        check_attention(k, pool, 1, 77, 1, 2, 64, causal);
    }

    check_dwconv(pool, 3, 2, 5, 3, 37); /* temporal: clips, frames, tokens, channels */
    check_dwconv(pool, 9, 2, 5, 7, 37); /* spatial: frames, height, width, channels */

    m2k_pool_destroy(pool);
    if (failed) printf("first failure: %s\n", first_failure);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
