/* The NEON variant against the scalar oracle, built for AArch64 and run under qemu by
 * scripts/test-neon.sh. Every kernel of m2k_active() (which must be "neon") is compared
 * with its m2k_ref_* twin on odd shapes, rows wider than their contents (the padding must
 * come back untouched) and both B layouts; the vector exp and erfc of arm/neon_math.h are
 * measured against libm in double.
 *
 * A value passes when |got − want| ≤ atol + rtol · scale, per kernel:
 *   sgemm, micro-kernel  atol 1e-6, rtol 1e-5 of Σ|a||b| + |bias| (+ |c| when accumulating);
 *                        with an activation epilogue 1.13 × that (its steepest slope)
 *                        + 1e-6 · |want|
 *   attention            atol 2e-6 (V in [−1, 1]; the output is a convex mix of V rows)
 *   element-wise         atol 1e-6, rtol 1e-6 of |want| (layernorm: of |want| + |beta|);
 *                        add exact
 *   exp                  ≤ 3 ulp on the normal range, ≤ 1 subnormal ulp below it
 *   erf (as 1 − erfc)    ≤ 1e-6 absolute; erfc ≤ 2e-6 relative (the GELU tail)
 * Prints one line per check and closes with "N passed, M failed"; exits 1 on any failure. */
#include "kernels.h"
#include "../../Sources/CKernels/arm/neon_math.h"
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEON_TEST_SEED 0x9E3779B97F4A7C15ull
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

static float *abs_copy(const float *x, size_t n) {
    float *p = copy_of(x, n);
    for (size_t i = 0; i < n; i++) p[i] = fabsf(p[i]);
    return p;
}

/* Marks the gaps between rows (columns cols..ld) so that a stray store shows. */
enum { PAD = 0x7A5 };
static void mark_padding(float *x, long rows, long cols, long ld) {
    for (long r = 0; r < rows; r++)
        for (long j = cols; j < ld; j++) x[r * ld + j] = (float)PAD + (float)j;
}

/* ---- comparison --------------------------------------------------------------------- */

typedef struct {
    double atol, rtol;
    const float *scale; /* per element, same layout as got; NULL: |want| */
} tolerance;

/* Compares rows × cols values (row stride ld); the padding past cols must be equal
 * bit for bit. Reports one line with the largest error, or the first mismatch. */
static int compare(const char *label, const float *got, const float *want, long rows, long cols,
                   long ld, tolerance tol) {
    double max_err = 0, max_ratio = 0;
    for (long r = 0; r < rows; r++) {
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
            double s = tol.scale ? fabs((double)tol.scale[i]) : fabs((double)w);
            double bound = tol.atol + tol.rtol * s;
            if (!(err <= bound)) {
                report(0, "%s: [%ld][%ld] got %.9g want %.9g (|err| %.3g > tol %.3g)", label, r,
                       j, g, w, err, bound);
                return 0;
            }
            if (err > max_err) max_err = err;
            if (err / bound > max_ratio) max_ratio = err / bound;
        }
    }
    report(1, "%s: max |err| %.3g (%.2f of tol)", label, max_err, max_ratio);
    return 1;
}

static const tolerance ELEMENTWISE = {1e-6, 1e-6, NULL};

static const char *act_name(m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return "quickgelu";
    case M2K_ACT_GELU: return "gelu";
    default: return "none";
    }
}

/* ---- dispatch ----------------------------------------------------------------------- */

static const m2k_kernels *check_dispatch(void) {
    const m2k_kernels *k = m2k_active();
    const char *why = m2k_dispatch_error();
    report(k != NULL, "dispatch: m2k_active() returns a table");
    if (!k) return NULL;
    report(strcmp(k->name, "neon") == 0 && k->variant == M2K_VARIANT_NEON,
           "dispatch: active variant is \"%s\" (want \"neon\")%s%s", k->name, why ? ": " : "",
           why ? why : "");
    report(m2k_cpu()->neon && m2k_variant_kernels(M2K_VARIANT_NEON) == k,
           "dispatch: m2k_cpu()->neon = %d, m2k_variant_kernels(NEON) is the active table",
           m2k_cpu()->neon);
    report(k->mr == 8 && k->nr == 12, "dispatch: micro-tile %d x %d (want 8 x 12)", k->mr, k->nr);
    return k;
}

/* ---- exp and erfc against libm -------------------------------------------------------- */

static float exp1(float x) {
    float out[4];
    vst1q_f32(out, m2k_neon_exp(vdupq_n_f32(x)));
    return out[0];
}

static float erfc1(float z) {
    float out[4];
    vst1q_f32(out, m2k_neon_erfc(vdupq_n_f32(z)));
    return out[0];
}

static void check_exp(void) {
    double max_ulp = 0, max_sub = 0;
    float worst = 0;
    const long steps = 1 << 20;
    for (long i = 0; i <= steps; i++) {
        float x = -104.0f + 193.0f * (float)i / (float)steps; /* [−104, 89] */
        double want = exp((double)x);
        double got = exp1(x);
        if (want > FLT_MAX) {
            if (!isinf(got)) { max_ulp = INFINITY; worst = x; }
            continue;
        }
        if (want < FLT_MIN) {
            double sub_err = fabs(got - want) / 0x1p-149;
            if (sub_err > max_sub) max_sub = sub_err;
            continue;
        }
        double ulp = ldexp(1.0, ilogb(want) - 23);
        double e = fabs(got - want) / ulp;
        if (e > max_ulp) { max_ulp = e; worst = x; }
    }
    report(max_ulp <= 3.0, "exp: max %.2f ulp on the normal range (at x = %.9g), over %ld points",
           max_ulp, worst, steps + 1);
    report(max_sub <= 1.0, "exp: max %.2f subnormal ulp for x in [-104, -87.3]", max_sub);

    const float specials[] = {-INFINITY, -1e30f, -1000.0f, -104.0f, 0.0f, 100.0f, INFINITY};
    const float wants[] = {0.0f, 0.0f, 0.0f, 0.0f, 1.0f, INFINITY, INFINITY};
    int ok = 1;
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) {
        float g = exp1(specials[i]);
        if (g != wants[i]) {
            report(0, "exp: exp(%g) = %g, want %g", specials[i], g, wants[i]);
            ok = 0;
        }
    }
    if (ok) report(1, "exp: exp(-inf, -1e30, -1000, -104) = 0, exp(0) = 1, exp(100, inf) = inf");
    report(isnan(exp1(NAN)), "exp: exp(NaN) is NaN");
}

static void check_erf(void) {
    double max_abs = 0, max_rel = 0;
    float worst_abs = 0, worst_rel = 0;
    const long steps = 1 << 20;
    for (long i = 0; i <= steps; i++) {
        float z = -6.0f + 12.0f * (float)i / (float)steps;
        float c = erfc1(fabsf(z));
        double got = z >= 0 ? 1.0 - (double)c : (double)c - 1.0;
        double e = fabs(got - erf((double)z));
        if (e > max_abs) { max_abs = e; worst_abs = z; }
    }
    for (long i = 0; i <= steps; i++) {
        float z = 10.0f * (float)i / (float)steps; /* erfc(10) ≈ 2e-45: the last subnormals */
        double want = erfc((double)z);
        if (want < 1e-37) continue;
        double e = fabs((double)erfc1(z) - want) / want;
        if (e > max_rel) { max_rel = e; worst_rel = z; }
    }
    report(max_abs <= 1e-6, "erf: max |err| %.3g (at z = %.6g) for z in [-6, 6], as 1 - erfc",
           max_abs, worst_abs);
    report(max_rel <= 2e-6, "erfc: max relative err %.3g (at z = %.6g) for z in [0, 10]", max_rel,
           worst_rel);
    report(erfc1(INFINITY) == 0.0f && isnan(erfc1(NAN)), "erfc: erfc(inf) = 0, erfc(NaN) is NaN");
}

/* ---- element-wise kernels ------------------------------------------------------------ */

static void check_layernorm(const m2k_kernels *k, long rows, long cols, long ldx, long ldy,
                            float offset, int in_place) {
    if (in_place) ldy = ldx;
    float *x = randoms((size_t)(rows * ldx), -2.0f, 2.0f);
    for (long i = 0; i < rows * ldx; i++) x[i] += offset;
    float *gamma = randoms((size_t)cols, 0.5f, 1.5f), *beta = randoms((size_t)cols, -1.0f, 1.0f);
    float *want = randoms((size_t)(rows * ldy), 0, 1);
    mark_padding(want, rows, cols, ldy);
    float *got;
    if (in_place) {
        mark_padding(x, rows, cols, ldx);
        memcpy(want, x, (size_t)(rows * ldx) * sizeof(float));
        got = copy_of(x, (size_t)(rows * ldx));
        m2k_ref_layernorm(want, want, gamma, beta, rows, cols, ldx, ldx, 1e-5f);
        k->layernorm(got, got, gamma, beta, rows, cols, ldx, ldx, 1e-5f);
    } else {
        got = copy_of(want, (size_t)(rows * ldy));
        m2k_ref_layernorm(x, want, gamma, beta, rows, cols, ldx, ldy, 1e-5f);
        k->layernorm(x, got, gamma, beta, rows, cols, ldx, ldy, 1e-5f);
    }
    float *scale = copy_of(want, (size_t)(rows * ldy));
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < cols; j++)
            scale[r * ldy + j] = fabsf(want[r * ldy + j]) + fabsf(beta[j]);
    char label[128];
    snprintf(label, sizeof label, "layernorm %ldx%ld ldx %ld ldy %ld mean %+g%s", rows, cols, ldx,
             ldy, offset, in_place ? " in place" : "");
    compare(label, got, want, rows, cols, ldy, (tolerance){1e-6, 1e-6, scale});
    free(x); free(gamma); free(beta); free(want); free(got); free(scale);
}

static void check_softmax(const m2k_kernels *k, const char *what, long rows, long cols, long ld,
                          float scale, int causal, long offset, float lo, float hi,
                          int masked) {
    float *want = randoms((size_t)(rows * ld), lo, hi);
    if (masked) /* scores already masked to −inf, as a caller's mask would leave them */
        for (long r = 0; r < rows; r++)
            for (long j = 0; j < cols; j++)
                if ((r + 2 * j) % 5 == 1) want[r * ld + j] = -INFINITY;
    mark_padding(want, rows, cols, ld);
    float *got = copy_of(want, (size_t)(rows * ld));
    m2k_ref_softmax(want, rows, cols, ld, scale, causal, offset);
    k->softmax(got, rows, cols, ld, scale, causal, offset);
    char label[160], mask[48] = "";
    if (causal) snprintf(mask, sizeof mask, " causal_offset %ld", offset);
    snprintf(label, sizeof label, "softmax %s %ldx%ld ld %ld scale %g%s", what, rows, cols, ld,
             scale, mask);
    compare(label, got, want, rows, cols, ld, ELEMENTWISE);
    free(want); free(got);
}

static const float extremes[] = {
    0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, -1e-8f, 0.5f, -0.5f, 3.0f, -3.0f, 5.0f, -5.0f,
    5.7f, -5.7f, 10.0f, -10.0f, 30.0f, -30.0f, 51.9f, -51.9f, 52.5f, -52.5f, 60.0f, -60.0f,
    88.0f, -88.0f, 100.0f, -100.0f, 1e4f, -1e4f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX,
};

typedef void (*inplace_fn)(float *x, size_t n);

static void check_unary(const char *name, inplace_fn fast, inplace_fn ref, size_t n,
                        size_t misalign, float range) {
    float *buf = randoms(n + misalign, -range, range);
    float *want = copy_of(buf, n + misalign), *got = copy_of(buf, n + misalign);
    ref(want + misalign, n);
    fast(got + misalign, n);
    char label[96];
    snprintf(label, sizeof label, "%s n=%zu%s values in [-%g, %g]", name, n,
             misalign ? " misaligned" : "", range, range);
    compare(label, got + misalign, want + misalign, 1, (long)n, (long)n, ELEMENTWISE);
    free(buf); free(want); free(got);
}

static void check_unary_extremes(const char *name, inplace_fn fast, inplace_fn ref) {
    size_t n = sizeof extremes / sizeof *extremes;
    float *want = copy_of(extremes, n), *got = copy_of(extremes, n);
    ref(want, n);
    fast(got, n);
    char label[96];
    snprintf(label, sizeof label, "%s extremes (0, ±1e-30 ... ±1e4, ±1e30, ±FLT_MAX)", name);
    compare(label, got, want, 1, (long)n, (long)n, ELEMENTWISE);
    free(want); free(got);
}

static void check_add(const m2k_kernels *k, size_t n, size_t misalign) {
    float *x = randoms(n + misalign, -3.0f, 3.0f), *y = randoms(n + misalign, -3.0f, 3.0f);
    float *want = copy_of(y, n + misalign);
    m2k_ref_add(want + misalign, x + misalign, n);
    k->add(y + misalign, x + misalign, n);
    char label[64];
    snprintf(label, sizeof label, "add n=%zu%s", n, misalign ? " misaligned" : "");
    compare(label, y + misalign, want + misalign, 1, (long)n, (long)n, (tolerance){0, 0, NULL});
    free(x); free(y); free(want);
}

static void check_bias_act(const m2k_kernels *k, int m, int n, long ldc, m2k_activation act,
                           int with_bias) {
    float *want = randoms((size_t)(m * ldc), -6.0f, 6.0f);
    mark_padding(want, m, n, ldc);
    float *got = copy_of(want, (size_t)(m * ldc));
    float *bias = with_bias ? randoms((size_t)n, -1.0f, 1.0f) : NULL;
    m2k_ref_bias_act(want, ldc, m, n, bias, act);
    k->bias_act(got, ldc, m, n, bias, act);
    char label[96];
    snprintf(label, sizeof label, "bias_act %dx%d ldc %ld act %s%s", m, n, ldc, act_name(act),
             with_bias ? " + bias" : "");
    compare(label, got, want, m, n, ldc, ELEMENTWISE);
    free(want); free(got); free(bias);
}

/* ---- GEMM ------------------------------------------------------------------------------ */

static void check_micro(const m2k_kernels *k, long kc, long ldc, int load_c) {
    const int mr = k->mr, nr = k->nr;
    float *ap = randoms((size_t)(kc * mr), -1.0f, 1.0f); /* (kc, mr) */
    float *bp = randoms((size_t)(kc * nr), -1.0f, 1.0f); /* (kc, nr) */
    float *got = randoms((size_t)(mr * ldc), -1.0f, 1.0f);
    mark_padding(got, mr, nr, ldc);
    float *want = copy_of(got, (size_t)(mr * ldc)), *scale = copy_of(got, (size_t)(mr * ldc));
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            double sum = load_c ? want[i * ldc + j] : 0, mag = load_c ? fabs(sum) : 0;
            for (long p = 0; p < kc; p++) {
                sum += (double)ap[p * mr + i] * bp[p * nr + j];
                mag += fabs((double)ap[p * mr + i] * bp[p * nr + j]);
            }
            want[i * ldc + j] = (float)sum;
            scale[i * ldc + j] = (float)mag;
        }
    }
    k->sgemm_micro(kc, ap, bp, got, ldc, load_c);
    char label[80];
    snprintf(label, sizeof label, "sgemm_micro kc=%ld ldc=%ld load_c=%d", kc, ldc, load_c);
    compare(label, got, want, mr, nr, ldc, (tolerance){1e-6, 1e-5, scale});
    free(ap); free(bp); free(got); free(want); free(scale);
}

typedef struct { long m, n, k; } gemm_shape;

typedef struct {
    m2k_activation act;
    int bias, accumulate;
} gemm_epilogue;

/* One shape and layout: the oracle runs once per epilogue, the NEON path with and without
 * the pool. */
static void check_sgemm(const m2k_kernels *k, m2k_pool *pool, gemm_shape s, m2k_b_layout layout) {
    static const gemm_epilogue epilogues[] = {
        {M2K_ACT_NONE, 0, 0},      {M2K_ACT_NONE, 1, 0}, {M2K_ACT_QUICKGELU, 1, 0},
        {M2K_ACT_QUICKGELU, 0, 0}, {M2K_ACT_GELU, 1, 0}, {M2K_ACT_GELU, 0, 0},
        {M2K_ACT_NONE, 1, 1},      {M2K_ACT_NONE, 0, 1},
    };
    const long lda = s.k + 3, ldc = s.n + 5;
    const long ldb = layout == M2K_B_NK ? s.k + 2 : s.n + 2;
    const long b_rows = layout == M2K_B_NK ? s.n : s.k;
    float *a = randoms((size_t)(s.m * lda), -1.0f, 1.0f);
    float *b = randoms((size_t)(b_rows * ldb), -1.0f, 1.0f);
    float *bias = randoms((size_t)s.n, -1.0f, 1.0f);
    float *c0 = randoms((size_t)(s.m * ldc), -2.0f, 2.0f);
    mark_padding(c0, s.m, s.n, ldc);
    float *bp = m2k_alloc(m2k_packed_b_floats(k->nr, s.n, s.k) * sizeof(float));
    m2k_pack_b(k->nr, s.n, s.k, b, ldb, layout, bp);

    /* scale = Σ|a||b| + |bias| (+ |c| when accumulating): the oracle on absolute values. */
    float *abs_a = abs_copy(a, (size_t)(s.m * lda)), *abs_b = abs_copy(b, (size_t)(b_rows * ldb));
    float *abs_bias = abs_copy(bias, (size_t)s.n);
    float *magnitude = copy_of(c0, (size_t)(s.m * ldc));

    for (size_t e = 0; e < sizeof epilogues / sizeof *epilogues; e++) {
        gemm_epilogue ep = epilogues[e];
        const float *bias_or_null = ep.bias ? bias : NULL;
        float *want = copy_of(c0, (size_t)(s.m * ldc));
        m2k_ref_gemm(s.m, s.n, s.k, a, lda, b, ldb, layout, want, ldc, bias_or_null, ep.act,
                     ep.accumulate);
        for (long i = 0; i < s.m * ldc; i++) magnitude[i] = fabsf(c0[i]);
        m2k_ref_gemm(s.m, s.n, s.k, abs_a, lda, abs_b, ldb, layout, magnitude, ldc,
                     ep.bias ? abs_bias : NULL, M2K_ACT_NONE, ep.accumulate);
        /* the epilogue's own error: activation slopes stay below 1.13, plus ~1e-6 relative */
        for (long r = 0; r < s.m; r++)
            for (long j = 0; j < s.n; j++)
                magnitude[r * ldc + j] = 1.13f * magnitude[r * ldc + j] +
                                         0.1f * fabsf(want[r * ldc + j]);
        for (int with_pool = 0; with_pool < 2; with_pool++) {
            float *got = copy_of(c0, (size_t)(s.m * ldc));
            m2k_sgemm(k, with_pool ? pool : NULL, s.m, s.n, s.k, a, lda, bp, got, ldc,
                      bias_or_null, ep.act, ep.accumulate);
            char label[160];
            snprintf(label, sizeof label, "sgemm %s %ldx%ldx%ld (MxNxK) act %s%s%s pool %s",
                     layout == M2K_B_NK ? "B(N,K)" : "B(K,N)", s.m, s.n, s.k, act_name(ep.act),
                     ep.bias ? " + bias" : "", ep.accumulate ? " accumulate" : "",
                     with_pool ? "2 threads" : "NULL");
            compare(label, got, want, s.m, s.n, ldc, (tolerance){1e-6, 1e-5, magnitude});
            free(got);
        }
        free(want);
    }
    free(a); free(b); free(bias); free(c0); m2k_free(bp);
    free(abs_a); free(abs_b); free(abs_bias); free(magnitude);
}

/* ---- attention ------------------------------------------------------------------------- */

/* All queries go through m2k_attention; the first 1 or 3 through m2k_attention_queries,
 * whose output rows are the first rows of each sequence of the full result. */
static void check_attention(const m2k_kernels *k, m2k_pool *pool, long seqs, long tokens,
                            int heads, int head_dim, int causal) {
    const long width = (long)heads * head_dim;
    const long ld_qkv = 3 * width + 4, ld_out = width + 3;
    float *qkv = randoms((size_t)(seqs * tokens * ld_qkv), -1.0f, 1.0f);
    float *full = randoms((size_t)(seqs * tokens * ld_out), 0, 1); /* (seqs, tokens, width) */
    mark_padding(full, seqs * tokens, width, ld_out);
    m2k_ref_attention(seqs, tokens, heads, head_dim, qkv, ld_qkv, full, ld_out, causal);

    const long query_counts[] = {tokens, 1, 3};
    for (size_t qi = 0; qi < sizeof query_counts / sizeof *query_counts; qi++) {
        long queries = query_counts[qi] < tokens ? query_counts[qi] : tokens;
        float *want = malloc((size_t)(seqs * queries * ld_out) * sizeof(float));
        if (!want) { perror("malloc"); exit(2); }
        for (long s = 0; s < seqs; s++)
            memcpy(want + s * queries * ld_out, full + s * tokens * ld_out,
                   (size_t)(queries * ld_out) * sizeof(float));
        for (int with_pool = 0; with_pool < 2; with_pool++) {
            float *got = copy_of(want, (size_t)(seqs * queries * ld_out));
            for (long r = 0; r < seqs * queries; r++)
                for (long j = 0; j < width; j++) got[r * ld_out + j] = NAN; /* all written */
            m2k_pool *p = with_pool ? pool : NULL;
            if (qi == 0)
                m2k_attention(k, p, seqs, tokens, heads, head_dim, qkv, ld_qkv, got, ld_out,
                              causal);
            else
                m2k_attention_queries(k, p, seqs, tokens, queries, heads, head_dim, qkv, ld_qkv,
                                      got, ld_out, causal);
            char label[160];
            snprintf(label, sizeof label,
                     "attention%s seqs %ld tokens %ld queries %ld heads %d head_dim %d%s pool %s",
                     qi == 0 ? "" : "_queries", seqs, tokens, queries, heads, head_dim,
                     causal ? " causal" : "", with_pool ? "2 threads" : "NULL");
            compare(label, got, want, seqs * queries, width, ld_out,
                    (tolerance){2e-6, 0, NULL});
            free(got);
        }
        free(want);
    }
    free(qkv); free(full);
}

/* ---- pool ------------------------------------------------------------------------------ */

typedef struct { long ntasks; atomic_long ran, out_of_range; } pool_job;

static void count_task(void *ctx, long task, int worker) {
    (void)worker;
    pool_job *j = ctx;
    atomic_fetch_add(&j->ran, 1);
    if (task < 0 || task >= j->ntasks) atomic_fetch_add(&j->out_of_range, 1);
}

/* Back-to-back jobs of alternating size: a worker that wakes after a job has ended must
 * not take tasks of the next one with the old count. */
static void check_pool_jobs(m2k_pool *pool) {
    const long jobs = 20000;
    long wrong = 0;
    for (long i = 0; i < jobs; i++) {
        pool_job j = {.ntasks = i % 2 ? 2 : 64};
        atomic_init(&j.ran, 0);
        atomic_init(&j.out_of_range, 0);
        m2k_pool_run(pool, j.ntasks, count_task, &j);
        if (atomic_load(&j.ran) != j.ntasks || atomic_load(&j.out_of_range) != 0) wrong++;
    }
    report(wrong == 0, "pool: %ld back-to-back jobs of 64 and 2 tasks, %ld ran the wrong tasks",
           jobs, wrong);
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

    check_exp();
    check_erf();

    check_layernorm(k, 1, 1, 1, 1, 0.0f, 0);
    check_layernorm(k, 3, 3, 3, 3, 0.0f, 0);
    check_layernorm(k, 5, 13, 16, 15, 0.0f, 0);
    check_layernorm(k, 7, 768, 770, 769, 0.0f, 0);
    check_layernorm(k, 4, 768, 768, 768, 30.0f, 0);
    check_layernorm(k, 3, 768, 768, 768, 1000.0f, 0); /* mean ≫ spread: float sums drift */
    check_layernorm(k, 6, 197, 199, 199, -3.0f, 1);

    check_softmax(k, "plain", 1, 1, 1, 1.0f, 0, 0, -5.0f, 5.0f, 0);
    check_softmax(k, "plain", 3, 3, 3, 1.0f, 0, 0, -5.0f, 5.0f, 0);
    check_softmax(k, "plain", 4, 4, 6, 1.0f, 0, 0, -5.0f, 5.0f, 0);
    check_softmax(k, "plain", 5, 197, 200, 1.0f, 0, 0, -5.0f, 5.0f, 0);
    check_softmax(k, "scaled", 6, 197, 197, 0.125f, 0, 0, -20.0f, 20.0f, 0);
    check_softmax(k, "scaled wide-range", 6, 77, 80, 0.125f, 0, 0, -900.0f, 900.0f, 0);
    check_softmax(k, "negative-scale", 3, 21, 21, -0.5f, 0, 0, -5.0f, 5.0f, 0);
    check_softmax(k, "masked -inf", 7, 19, 20, 1.0f, 0, 0, -5.0f, 5.0f, 1);
    check_softmax(k, "causal", 197, 197, 197, 0.125f, 1, 0, -20.0f, 20.0f, 0);
    check_softmax(k, "causal", 8, 13, 15, 1.0f, 1, 3, -5.0f, 5.0f, 0);
    check_softmax(k, "causal", 8, 13, 13, 1.0f, 1, -2, -5.0f, 5.0f, 0);
    check_softmax(k, "causal", 9, 77, 80, 0.5f, 1, 300, -5.0f, 5.0f, 0);
    check_softmax(k, "causal", 4, 5, 5, 1.0f, 1, -10, -5.0f, 5.0f, 0);

    const size_t sizes[] = {1, 3, 4, 5, 17, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        check_unary("quickgelu", k->quickgelu, m2k_ref_quickgelu, sizes[i], i % 2, 8.0f);
        check_unary("gelu", k->gelu, m2k_ref_gelu, sizes[i], i % 2, 8.0f);
    }
    check_unary("gelu", k->gelu, m2k_ref_gelu, 4096, 0, 1.0f);
    check_unary_extremes("quickgelu", k->quickgelu, m2k_ref_quickgelu);
    check_unary_extremes("gelu", k->gelu, m2k_ref_gelu);

    const size_t add_sizes[] = {1, 3, 4, 15, 16, 17, 1000};
    for (size_t i = 0; i < sizeof add_sizes / sizeof *add_sizes; i++)
        check_add(k, add_sizes[i], i % 2);

    const m2k_activation acts[] = {M2K_ACT_NONE, M2K_ACT_QUICKGELU, M2K_ACT_GELU};
    const struct { int m, n; long ldc; } tiles[] = {
        {1, 1, 1}, {3, 5, 7}, {8, 12, 12}, {13, 37, 40},
    };
    for (size_t a = 0; a < 3; a++)
        for (size_t t = 0; t < sizeof tiles / sizeof *tiles; t++)
            for (int with_bias = 0; with_bias < 2; with_bias++)
                check_bias_act(k, tiles[t].m, tiles[t].n, tiles[t].ldc, acts[a], with_bias);

    const long kcs[] = {1, 2, 7, 300};
    for (size_t i = 0; i < sizeof kcs / sizeof *kcs; i++)
        for (int load_c = 0; load_c < 2; load_c++) check_micro(k, kcs[i], i % 2 ? 17 : 12, load_c);

    const gemm_shape shapes[] = {
        {1, 1, 1}, {13, 37, 29}, {8, 12, 16}, {3, 100, 7}, {5, 7, 0},
        {40, 50, 300},  /* K > 256 */
        {40, 50, 800},  /* K past the driver's K block (384 today): partial sums carried */
        {200, 30, 20},  /* M > 192: two M blocks */
        {197, 61, 520}, /* both */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        check_sgemm(k, pool, shapes[i], M2K_B_NK);
        check_sgemm(k, pool, shapes[i], M2K_B_KN);
    }

    for (int causal = 0; causal < 2; causal++) {
        check_attention(k, pool, 2, 197, 2, 64, causal);
        check_attention(k, pool, 3, 5, 3, 8, causal);
    }

    check_pool_jobs(pool);
    m2k_pool_destroy(pool);

    if (failed) printf("first failure: %s\n", first_failure);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
