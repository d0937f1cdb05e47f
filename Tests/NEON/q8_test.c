/* The int8 GEMM of the NEON table against the scalar oracle m2k_ref_q8_gemm, built for
 * AArch64 and run under qemu by scripts/test-neon.sh on CPUs with i8mm, with dotprod only and
 * with neither. Checks:
 *   - m2k_q8_pack picks smmla with HWCAP2_I8MM, else sdot with HWCAP_ASIMDDP, else plain NEON;
 *   - m2k_q8_quantize_weights against a separate loop (division, rintf);
 *   - every int8 micro-kernel this CPU runs (the table's list, each forced through a copy of
 *     the table) on odd shapes, K not a multiple of 4, N not a multiple of the panel, M over
 *     several blocks, K = 3072, with bias, each activation, accumulate, a pool of 2 and none;
 *     C rows wider than N whose padding must come back untouched;
 *   - rounding ties (x / scale on a half-integer goes to even) and a row whose scale is
 *     subnormal (1/scale is not exact there: the kernels divide);
 *   - an all-zero row (scale 0: the output is act(bias));
 *   - int8 against fp32 m2k_ref_gemm on normal data: cosine ≥ 0.999 per output.
 * A value passes when |got − want| ≤ 1e-5 · max(1, max_j |want[row, j]|): the integer sums are
 * exact, so only the final float steps (and the vector activations) may differ; each line
 * also says how many elements differ at all. Closes with "N passed, M failed"; exits 1 on any
 * failure. */
#include "kernels.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEON_TEST_SEED 0x243F6A8885A308D3ull
#include "harness.h"

/* ---- data --------------------------------------------------------------------------- */

static float normal(void) { /* Box–Muller */
    float u = uniform(1e-7f, 1.0f), v = uniform(0.0f, 1.0f);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void *checked(void *p) {
    if (!p) { perror("malloc"); exit(2); }
    return p;
}

static float *randoms(size_t n, float lo, float hi) {
    float *p = checked(malloc((n ? n : 1) * sizeof(float)));
    for (size_t i = 0; i < n; i++) p[i] = uniform(lo, hi);
    return p;
}

enum { PAD = 0x7A5 };

static const char *act_name(m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return "quickgelu";
    case M2K_ACT_GELU: return "gelu";
    default: return "none";
    }
}

/* ---- comparison --------------------------------------------------------------------- */

/* rows × cols of C (row stride ld) within 1e-5 of each row's magnitude; the padding past
 * cols bit for bit. */
static void compare(const char *label, const float *got, const float *want, long rows,
                    long cols, long ld) {
    double worst = 0;
    long differ = 0;
    for (long r = 0; r < rows; r++) {
        double mag = 1.0;
        for (long j = 0; j < cols; j++)
            if (fabs((double)want[r * ld + j]) > mag) mag = fabs((double)want[r * ld + j]);
        for (long j = 0; j < ld; j++) {
            float g = got[r * ld + j], w = want[r * ld + j];
            if (j >= cols) {
                if (memcmp(&g, &w, sizeof g) != 0) {
                    report(0, "%s: padding [%ld][%ld] overwritten (%g)", label, r, j, g);
                    return;
                }
                continue;
            }
            double err = fabs((double)g - (double)w);
            if (g != w) differ++;
            if (!(err <= 1e-5 * mag)) {
                report(0, "%s: [%ld][%ld] got %.9g want %.9g (|err| %.3g > 1e-5 x %.3g)", label,
                       r, j, g, w, err, mag);
                return;
            }
            if (err / mag > worst) worst = err / mag;
        }
    }
    report(1, "%s: max err %.3g of the row's magnitude, %ld of %ld differ", label, worst, differ,
           rows * cols);
}

/* ---- the checks ------------------------------------------------------------------------- */

/* A copy of the NEON table that packs only for `kernel`. */
typedef struct {
    m2k_kernels table;
    const m2k_q8_kernel *list[2];
} forced_table;

static void force(forced_table *f, const m2k_kernels *k, const m2k_q8_kernel *kernel) {
    f->table = *k;
    f->list[0] = kernel;
    f->list[1] = NULL;
    f->table.q8_kernels = f->list;
}

static void check_dispatch(const m2k_kernels *k) {
    report(k && strcmp(k->name, "neon") == 0, "dispatch: active table is \"%s\" (want \"neon\")",
           k ? k->name : "none");
    if (!k) return;
    const m2k_q8_kernel *first = NULL;
    for (const m2k_q8_kernel *const *q = k->q8_kernels; q && *q; q++)
        if ((*q)->runs()) { first = *q; break; }
    const m2k_cpu_features *f = m2k_cpu();
    const char *want = f->i8mm ? "neon-i8mm" : f->asimddp ? "neon-dot" : "neon";
    report(first && strcmp(first->name, want) == 0,
           "dispatch: HWCAP2_I8MM = %d, HWCAP_ASIMDDP = %d: int8 kernel \"%s\" (want \"%s\")",
           f->i8mm, f->asimddp, first ? first->name : "none", want);
    /* The blob records that kernel: packing a 1 × 1 weight and reading the header back is
     * not possible from outside, so the size must match that kernel's panel. */
    size_t bytes = m2k_q8_packed_bytes(k, 1, 1);
    report(first && bytes > (size_t)first->nr * 4,
           "dispatch: m2k_q8_packed_bytes(1 x 1) = %zu holds one %d-column panel", bytes,
           first ? first->nr : 0);
}

static void check_quantize_weights(long n, long kdim) {
    float *w = randoms((size_t)(n * kdim), -3.0f, 3.0f);
    if (n > 1) memset(w + kdim, 0, (size_t)kdim * sizeof(float)); /* an all-zero channel */
    int8_t *wq = checked(malloc((size_t)(n * kdim)));
    float *scale = checked(malloc((size_t)n * sizeof(float)));
    m2k_q8_quantize_weights(w, n, kdim, wq, scale);
    int ok = 1;
    for (long j = 0; j < n && ok; j++) {
        float mx = 0;
        for (long k = 0; k < kdim; k++) mx = fmaxf(mx, fabsf(w[j * kdim + k]));
        float s = mx / 127.0f;
        if (memcmp(&s, &scale[j], sizeof s) != 0) {
            report(0, "quantize_weights %ldx%ld: scale[%ld] = %.9g, want %.9g", n, kdim, j,
                   scale[j], s);
            ok = 0;
        }
        for (long k = 0; k < kdim && ok; k++) {
            int want = s > 0 ? (int)rintf(w[j * kdim + k] / s) : 0;
            if (wq[j * kdim + k] != want) {
                report(0, "quantize_weights %ldx%ld: wq[%ld][%ld] = %d, want %d", n, kdim, j, k,
                       wq[j * kdim + k], want);
                ok = 0;
            }
        }
    }
    if (ok) report(1, "quantize_weights %ldx%ld (one all-zero channel) matches a plain loop", n,
                   kdim);
    free(w); free(wq); free(scale);
}

typedef struct { long m, n, k; } shape;

typedef struct {
    m2k_activation act;
    int bias, accumulate;
} epilogue;

static const epilogue epilogues[] = {
    {M2K_ACT_NONE, 0, 0}, {M2K_ACT_NONE, 1, 0}, {M2K_ACT_QUICKGELU, 1, 0},
    {M2K_ACT_GELU, 0, 0}, {M2K_ACT_GELU, 1, 0}, {M2K_ACT_NONE, 1, 1},
};

/* x (m, lda) with row 0 and row m/2 special when asked: row 0 holds ties (scale exactly 1:
 * x = 127, ±0.5, ±1.5, ±2.5 …), row m/2 is all zero; the others random in [-2, 2]. */
static float *make_x(long m, long kdim, long lda, int special) {
    float *x = randoms((size_t)(m * lda), -2.0f, 2.0f);
    if (special && kdim > 0) {
        for (long k = 0; k < kdim; k++) x[k] = (float)((k % 9) - 4) + 0.5f;
        x[0] = 127.0f;
        if (m > 2) memset(x + (m / 2) * lda, 0, (size_t)kdim * sizeof(float));
    }
    return x;
}

static void check_gemm(const m2k_kernels *table, const char *kname, m2k_pool *pool, shape s) {
    const long lda = s.k + 3, ldc = s.n + 5;
    float *x = make_x(s.m, s.k, lda, 1);
    float *w = randoms((size_t)(s.n * s.k), -1.0f, 1.0f);
    float *bias = randoms((size_t)s.n, -1.0f, 1.0f);
    int8_t *wq = checked(malloc((size_t)(s.n * s.k) + 1));
    float *w_scale = checked(malloc((size_t)s.n * sizeof(float)));
    m2k_q8_quantize_weights(w, s.n, s.k, wq, w_scale);
    void *packed = checked(m2k_alloc(m2k_q8_packed_bytes(table, s.n, s.k)));
    m2k_q8_pack(table, s.n, s.k, wq, w_scale, packed);
    float *c0 = randoms((size_t)(s.m * ldc), -2.0f, 2.0f);
    for (long r = 0; r < s.m; r++)
        for (long j = s.n; j < ldc; j++) c0[r * ldc + j] = (float)PAD + (float)j;
    float *want = checked(malloc((size_t)(s.m * ldc) * sizeof(float)));
    float *got = checked(malloc((size_t)(s.m * ldc) * sizeof(float)));
    for (size_t e = 0; e < sizeof epilogues / sizeof *epilogues; e++) {
        epilogue ep = epilogues[e];
        memcpy(want, c0, (size_t)(s.m * ldc) * sizeof(float));
        m2k_ref_q8_gemm(s.m, s.n, s.k, x, lda, wq, w_scale, want, ldc, ep.bias ? bias : NULL,
                        ep.act, ep.accumulate);
        for (int use_pool = 0; use_pool < 2; use_pool++) {
            memcpy(got, c0, (size_t)(s.m * ldc) * sizeof(float));
            m2k_q8_gemm(table, use_pool ? pool : NULL, s.m, s.n, s.k, x, lda, packed, got, ldc,
                        ep.bias ? bias : NULL, ep.act, ep.accumulate);
            char label[160];
            snprintf(label, sizeof label, "q8_gemm [%s] %ldx%ldx%ld act %s%s%s, %s", kname, s.m,
                     s.n, s.k, act_name(ep.act), ep.bias ? " + bias" : "",
                     ep.accumulate ? " accumulate" : "", use_pool ? "2 threads" : "no pool");
            compare(label, got, want, s.m, s.n, ldc);
        }
    }
    free(x); free(w); free(bias); free(wq); free(w_scale); m2k_free(packed);
    free(c0); free(want); free(got);
}

/* A row whose largest |x| is 1e-39 (scale subnormal) and one whose values sit one ulp off the
 * ties, through an identity-like W that reads xq back: y[n] = x_scale · 1 · 127 · xq[n]. */
static void check_rounding_edges(const m2k_kernels *table, const char *kname) {
    const long m = 3, kdim = 37, n = 37;
    float *x = checked(malloc((size_t)(m * kdim) * sizeof(float)));
    for (long k = 0; k < kdim; k++) {
        x[k] = 1e-39f * (float)((k % 7) - 3) / 3.0f; /* subnormal scale */
        float tie = (float)((k % 11) - 5) + 0.5f;
        x[kdim + k] = nextafterf(tie, k % 2 ? INFINITY : -INFINITY);
        x[2 * kdim + k] = tie;
    }
    x[kdim] = x[2 * kdim] = 127.0f; /* scale exactly 1 */
    int8_t *wq = checked(calloc((size_t)(n * kdim), 1));
    float *w_scale = checked(malloc((size_t)n * sizeof(float)));
    for (long j = 0; j < n; j++) {
        wq[j * kdim + j] = 127;
        w_scale[j] = 1.0f;
    }
    void *packed = checked(m2k_alloc(m2k_q8_packed_bytes(table, n, kdim)));
    m2k_q8_pack(table, n, kdim, wq, w_scale, packed);
    float *want = checked(malloc((size_t)(m * n) * sizeof(float)));
    float *got = checked(malloc((size_t)(m * n) * sizeof(float)));
    m2k_ref_q8_gemm(m, n, kdim, x, kdim, wq, w_scale, want, n, NULL, M2K_ACT_NONE, 0);
    m2k_q8_gemm(table, NULL, m, n, kdim, x, kdim, packed, got, n, NULL, M2K_ACT_NONE, 0);
    int exact = memcmp(got, want, (size_t)(m * n) * sizeof(float)) == 0;
    long bad = -1;
    for (long i = 0; i < m * n && bad < 0; i++) if (got[i] != want[i]) bad = i;
    report(exact, "q8_gemm [%s] rounding: subnormal scale, ties to even and one ulp off them "
           "(bit-exact)%s", kname, bad >= 0 ? ": first difference below" : "");
    if (bad >= 0)
        printf("     row %ld col %ld: got %.9g want %.9g\n", bad / n, bad % n, got[bad], want[bad]);
    free(x); free(wq); free(w_scale); m2k_free(packed); free(want); free(got);
}

/* int8 against fp32 on normal data: the quantization error alone. */
static void check_against_fp32(const m2k_kernels *table, const char *kname) {
    const long m = 16, n = 48, kdim = 768;
    float *x = checked(malloc((size_t)(m * kdim) * sizeof(float)));
    float *w = checked(malloc((size_t)(n * kdim) * sizeof(float)));
    for (long i = 0; i < m * kdim; i++) x[i] = normal();
    for (long i = 0; i < n * kdim; i++) w[i] = 0.05f * normal();
    int8_t *wq = checked(malloc((size_t)(n * kdim)));
    float *w_scale = checked(malloc((size_t)n * sizeof(float)));
    m2k_q8_quantize_weights(w, n, kdim, wq, w_scale);
    void *packed = checked(m2k_alloc(m2k_q8_packed_bytes(table, n, kdim)));
    m2k_q8_pack(table, n, kdim, wq, w_scale, packed);
    float *y8 = checked(malloc((size_t)(m * n) * sizeof(float)));
    float *y32 = checked(malloc((size_t)(m * n) * sizeof(float)));
    m2k_q8_gemm(table, NULL, m, n, kdim, x, kdim, packed, y8, n, NULL, M2K_ACT_NONE, 0);
    m2k_ref_gemm(m, n, kdim, x, kdim, w, kdim, M2K_B_NK, y32, n, NULL, M2K_ACT_NONE, 0);
    double dot = 0, n8 = 0, n32 = 0;
    for (long i = 0; i < m * n; i++) {
        dot += (double)y8[i] * y32[i];
        n8 += (double)y8[i] * y8[i];
        n32 += (double)y32[i] * y32[i];
    }
    double cosine = dot / sqrt(n8 * n32);
    report(cosine >= 0.999, "q8_gemm [%s] vs fp32 m2k_ref_gemm, %ldx%ldx%ld normal data: "
           "cosine %.6f (want >= 0.999)", kname, m, n, kdim, cosine);
    free(x); free(w); free(wq); free(w_scale); m2k_free(packed); free(y8); free(y32);
}

int main(void) {
    const m2k_kernels *k = m2k_active();
    check_dispatch(k);
    if (!k || !k->q8_kernels) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }
    check_quantize_weights(1, 1);
    check_quantize_weights(7, 29);
    check_quantize_weights(5, 3072);

    m2k_pool *pool = m2k_pool_create(2);
    if (!pool) { perror("m2k_pool_create"); return 2; }
    /* One element; odd everything; exact tiles of the kernels (8 × 12, 6 × 8); K = 0;
     * K = 3072; M over two blocks of the driver (192 rows); several panels and chunks. */
    static const shape shapes[] = {
        {1, 1, 1},   {13, 37, 29}, {8, 12, 16}, {6, 8, 8}, {5, 3, 0},
        {7, 40, 3072}, {200, 45, 33}, {25, 300, 70},
    };
    check_gemm(k, "as dispatched", pool, shapes[1]);
    for (const m2k_q8_kernel *const *q = k->q8_kernels; *q; q++) {
        if (!(*q)->runs()) {
            printf("skip %s: this CPU cannot run it\n", (*q)->name);
            continue;
        }
        forced_table f;
        force(&f, k, *q);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            check_gemm(&f.table, (*q)->name, pool, shapes[s]);
        check_rounding_edges(&f.table, (*q)->name);
        check_against_fp32(&f.table, (*q)->name);
    }
    m2k_pool_destroy(pool);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
