/*
 * kernels.h — m2clip's C compute core.
 *
 * Usage
 * -----
 *   const m2k_kernels *k = m2k_active();          // best variant for this CPU,
 *                                                 // or the one M2CLIP_KERNELS forces
 *   m2k_pool *pool = m2k_pool_create(2);          // persistent workers, sleep when idle
 *
 *   // Linear layer y = x · Wᵀ + b with W stored (out, in) as in PyTorch:
 *   size_t n = m2k_packed_b_floats(k->nr, out, in);
 *   float *wp = m2k_alloc(n * sizeof(float));
 *   m2k_pack_b(k->nr, out, in, W, in, M2K_B_NK, wp);    // once, at load
 *   m2k_sgemm(k, pool, rows, out, in, x, in, wp, y, out, b, M2K_ACT_NONE, 0);
 *
 *   k->layernorm(x, y, gamma, beta, rows, cols, cols, cols, 1e-5f);
 *
 * Every variant (scalar, AVX2+FMA, AVX-512, NEON) fills the same table; the scalar
 * reference in ref/ is the oracle the others are tested against. Naming: matrices
 * are row-major; `ld*` is the distance in floats between consecutive rows.
 */
#ifndef M2CLIP_KERNELS_H
#define M2CLIP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct m2k_pool m2k_pool;

/* ---- variants and dispatch ---------------------------------------------------------- */

typedef enum {
    M2K_VARIANT_SCALAR = 0,
    M2K_VARIANT_AVX2 = 1,    /* AVX2 + FMA */
    M2K_VARIANT_AVX512 = 2,  /* AVX-512 F/BW/DQ/VL, OS-enabled ZMM state */
    M2K_VARIANT_NEON = 3,    /* AArch64 Advanced SIMD */
    M2K_VARIANT_COUNT = 4
} m2k_variant;

typedef enum {
    M2K_ACT_NONE = 0,
    M2K_ACT_QUICKGELU = 1, /* x · σ(1.702 x), CLIP's MLP */
    M2K_ACT_GELU = 2       /* exact x · Φ(x) with erf */
} m2k_activation;

/* GEMM micro-kernel: C(mr × nr, row stride ldc) = [C +] Ap · Bp over kc steps.
 * Ap is a packed A panel, k-major: ap[k * mr + i]; Bp a packed B panel, bp[k * nr + j]. */
typedef void (*m2k_sgemm_micro_fn)(long kc, const float *ap, const float *bp,
                                   float *c, long ldc, int load_c);

/* The same tile with A read in place, row-major: a(i, k) = a[i * lda + k]. Variants whose
 * loads can follow mr row streams (x86) skip packing A altogether with it. */
typedef void (*m2k_sgemm_rows_fn)(long kc, const float *a, long lda, const float *bp,
                                  float *c, long ldc, int load_c);

typedef struct m2k_kernels {
    const char *name;   /* "scalar", "avx2", "avx512", "neon" */
    m2k_variant variant;
    int mr, nr;         /* micro-tile of sgemm_micro */

    m2k_sgemm_micro_fn sgemm_micro;
    m2k_sgemm_rows_fn sgemm_rows; /* NULL: the driver packs A and uses sgemm_micro */

    /* c(m × n, ldc) = act(c + bias[j]); bias may be NULL. */
    void (*bias_act)(float *c, long ldc, int m, int n, const float *bias, m2k_activation act);

    /* y[r] = (x[r] − mean) / sqrt(var + eps) · gamma + beta, per row of `cols`. y may equal x. */
    void (*layernorm)(const float *x, float *y, const float *gamma, const float *beta,
                      long rows, long cols, long ldx, long ldy, float eps);

    /* In place, per row r: x[r][j] = softmax_j(scale · x[r][j]) over j < valid(r), and 0 for
     * j ≥ valid(r), where valid(r) = causal ? min(cols, r + causal_offset + 1) : cols. */
    void (*softmax)(float *x, long rows, long cols, long ld, float scale, int causal,
                    long causal_offset);

    void (*quickgelu)(float *x, size_t n); /* in place */
    void (*gelu)(float *x, size_t n);      /* in place, exact (erf) */
    void (*add)(float *y, const float *x, size_t n); /* y += x */
} m2k_kernels;

/* The table for `v`, or NULL when this CPU / build cannot run it. */
const m2k_kernels *m2k_variant_kernels(m2k_variant v);

/* The table in use: M2CLIP_KERNELS=scalar|avx2|avx512|neon forces one (an unknown or
 * unsupported name falls back to the best and m2k_dispatch_error() says why). */
const m2k_kernels *m2k_active(void);
const char *m2k_dispatch_error(void); /* NULL when the request was honoured */

/* CPU facts used by dispatch, for `m2clip bench` and the tests. */
typedef struct {
    int avx2, fma, f16c, avx512f, avx512bw, avx512dq, avx512vl, avx512vnni, avx512bf16, avxvnni;
    int os_avx, os_avx512; /* XCR0 has the YMM / ZMM state enabled */
    int neon, asimddp, i8mm;
} m2k_cpu_features;
const m2k_cpu_features *m2k_cpu(void);

/* ---- packed GEMM ---------------------------------------------------------------------- */

typedef enum {
    M2K_B_NK = 0, /* B stored (N, K): a PyTorch Linear weight (out, in) */
    M2K_B_KN = 1  /* B stored (K, N) */
} m2k_b_layout;

/* Floats needed to hold B (N × K logical, used as Bᵀ in C = A·Bᵀ) packed for panel width nr. */
size_t m2k_packed_b_floats(int nr, long n, long k);

/* Pack B into panels of nr columns: out[(p * K + k) * nr + j] = B[k, p*nr + j], zero padded. */
void m2k_pack_b(int nr, long n, long k, const float *b, long ldb, m2k_b_layout layout,
                float *out);

/* C(M × N, ldc) = act(A(M × K, lda) · B + bias), or C += A·B + bias when accumulate != 0
 * (then act must be NONE). B was packed by m2k_pack_b with this table's nr. Runs on `pool`
 * (NULL or a call from inside a pool task: on the calling thread only). */
void m2k_sgemm(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
               const float *a, long lda, const float *bp, float *c, long ldc,
               const float *bias, m2k_activation act, int accumulate);

/* Multi-head self-attention over `seqs` independent sequences of `tokens` tokens.
 * qkv: (seqs, tokens, 3 · heads · head_dim) with Q, K, V side by side per token (row
 * stride ld_qkv); out: (seqs, tokens, heads · head_dim), row stride ld_out.
 * out = softmax(Q Kᵀ / sqrt(head_dim) [+ causal mask]) V per sequence and head. One
 * (sequence, head) pair per task: a thread holds one head's scores at a time. */
void m2k_attention(const m2k_kernels *k, m2k_pool *pool, long seqs, long tokens, int heads,
                   int head_dim, const float *qkv, long ld_qkv, float *out, long ld_out,
                   int causal);

/* The same for only the first `queries` tokens of each sequence as queries (keys and
 * values are all `tokens`): out is (seqs, queries, heads · head_dim). A model that needs
 * only the CLS output of its last layer uses it with queries = 1. */
void m2k_attention_queries(const m2k_kernels *k, m2k_pool *pool, long seqs, long tokens,
                           long queries, int heads, int head_dim, const float *qkv,
                           long ld_qkv, float *out, long ld_out, int causal);

/* ---- thread pool ---------------------------------------------------------------------- */

typedef void (*m2k_task_fn)(void *ctx, long task, int worker);

/* nthreads counts the caller: 1 creates no threads. Workers block on a condition variable
 * when idle (no spinning). Returns NULL on failure (errno set). */
m2k_pool *m2k_pool_create(int nthreads);
void m2k_pool_destroy(m2k_pool *pool);
int m2k_pool_threads(const m2k_pool *pool);
/* Runs fn(ctx, t, worker) for t in [0, ntasks); returns when all are done. A call made from
 * inside a task (or with pool == NULL) runs the tasks serially on the calling thread. */
void m2k_pool_run(m2k_pool *pool, long ntasks, m2k_task_fn fn, void *ctx);

/* ---- memory --------------------------------------------------------------------------- */

void *m2k_alloc(size_t bytes); /* 64-byte aligned, NULL on failure; release with m2k_free */
void m2k_free(void *p);
/* A per-thread scratch buffer of at least `bytes`, reused across calls on the same thread. */
float *m2k_thread_scratch(int slot, size_t bytes);

/* ---- scalar reference (the oracle; unpacked, straightforward) ------------------------ */

void m2k_ref_gemm(long m, long n, long k, const float *a, long lda, const float *b, long ldb,
                  m2k_b_layout layout, float *c, long ldc, const float *bias,
                  m2k_activation act, int accumulate);
void m2k_ref_layernorm(const float *x, float *y, const float *gamma, const float *beta,
                       long rows, long cols, long ldx, long ldy, float eps);
void m2k_ref_softmax(float *x, long rows, long cols, long ld, float scale, int causal,
                     long causal_offset);
void m2k_ref_quickgelu(float *x, size_t n);
void m2k_ref_gelu(float *x, size_t n);
void m2k_ref_add(float *y, const float *x, size_t n);
void m2k_ref_attention(long seqs, long tokens, int heads, int head_dim, const float *qkv,
                       long ld_qkv, float *out, long ld_out, int causal);
void m2k_ref_bias_act(float *c, long ldc, int m, int n, const float *bias, m2k_activation act);

#ifdef __cplusplus
}
#endif
#endif
