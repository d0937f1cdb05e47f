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
 *   // The same layer with W kept as fp16 (half the memory), summed in fp32:
 *   uint16_t *wh = m2k_alloc(m2k_packed_b_floats(k->nr, out, in) * sizeof(uint16_t));
 *   m2k_pack_b_f16_bits(k->nr, out, in, W16, in, M2K_B_NK, wh); // W16: fp16 bits (out, in)
 *   m2k_sgemm_f16b(k, pool, rows, out, in, x, in, wh, y, out, b, M2K_ACT_NONE, 0);
 *   // ...or as bf16 (m2k_pack_b_bf16_bits, m2k_sgemm_bf16b): the same, with bf16 bits.
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
    M2K_VARIANT_AVX2 = 1,    /* AVX2 + FMA + F16C */
    M2K_VARIANT_AVX512 = 2,  /* AVX-512 F/BW/DQ/VL + F16C, OS-enabled ZMM state */
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
    /* dst[i] = src[i] widened from fp16 bits, exactly (a signalling NaN comes back quiet);
     * what m2k_sgemm_f16b runs on each slice of B. */
    void (*f16_to_f32)(const uint16_t *src, float *dst, size_t n);
    /* dst[i] = src[i] widened from bf16 bits: a 16-bit left shift, so every pattern (NaN,
     * signalling or not, inf, subnormals) comes back exactly; what m2k_sgemm_bf16b runs. */
    void (*bf16_to_f32)(const uint16_t *src, float *dst, size_t n);

    /* int8 GEMM (core/q8_gemm.c): the micro-kernels this table can pack for, best first,
     * NULL-terminated (m2k_q8_kernel is described in the int8 section below). m2k_q8_pack
     * takes the first this CPU runs and records it in the blob; NULL: the portable one. */
    const struct m2k_q8_kernel *const *q8_kernels;

    /* bf16 GEMM (core/bf16_gemm.c): the native bf16 micro-kernel this table can pack for
     * (m2k_bf16_kernel, bf16 section below), used when its runs() says so; NULL: the
     * portable path (bf16 values widened to fp32, the fp32 GEMM). */
    const struct m2k_bf16_kernel *bf16_kernel;

    /* Backward row kernels (training; drivers in core/backward.c spread them over the pool).
     * LayerNorm backward over `rows` rows from the forward's input x: dx written, or added
     * when `accumulate` (dx may be NULL); dgamma, dbeta (cols) += (either may be NULL). */
    void (*layernorm_backward)(const float *x, long ldx, const float *dy, long lddy,
                               const float *gamma, float *dx, long lddx, float *dgamma,
                               float *dbeta, long rows, long cols, float eps, int accumulate);
    /* dx[i] = dy[i] · act'(x[i]), x the pre-activation (dx may equal dy). */
    void (*activation_backward)(m2k_activation act, const float *x, const float *dy, float *dx,
                                size_t n);
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

/* ---- fp16-weight GEMM: B kept as fp16 bits, widened to fp32 a KC × nr slice at a time --
 *
 * The panels hold the same elements in the same places as m2k_pack_b's (count:
 * m2k_packed_b_floats, of uint16_t); m2k_sgemm_f16b widens the slice of a panel that the
 * fp32 driver would read with k->f16_to_f32 into per-thread scratch, once per M block,
 * and runs the fp32 micro-kernels on it. Its result is m2k_sgemm's on B rounded to fp16,
 * bit for bit. */

/* Pack fp32 B rounded to fp16 (m2k_f16_from_float), or B already in fp16 bits. */
void m2k_pack_b_f16(int nr, long n, long k, const float *b, long ldb, m2k_b_layout layout,
                    uint16_t *out);
void m2k_pack_b_f16_bits(int nr, long n, long k, const uint16_t *b, long ldb,
                         m2k_b_layout layout, uint16_t *out);

/* m2k_sgemm with B packed by m2k_pack_b_f16[_bits] for this table's nr. */
void m2k_sgemm_f16b(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                    const float *a, long lda, const uint16_t *bp, float *c, long ldc,
                    const float *bias, m2k_activation act, int accumulate);

/* ---- bf16-weight GEMM: the same driver and panels, B kept as bf16 bits ----------------
 *
 * As above with k->bf16_to_f32 widening each slice: m2k_sgemm's result on B rounded to bf16
 * (m2k_bf16_from_float: nearest, ties to even), bit for bit, in half the bytes. Unlike the
 * native bf16 GEMM below, x stays fp32: only the weights are rounded. */

/* Pack fp32 B rounded to bf16 (m2k_bf16_from_float), or B already in bf16 bits. */
void m2k_pack_b_bf16(int nr, long n, long k, const float *b, long ldb, m2k_b_layout layout,
                     uint16_t *out);
void m2k_pack_b_bf16_bits(int nr, long n, long k, const uint16_t *b, long ldb,
                          m2k_b_layout layout, uint16_t *out);

/* m2k_sgemm with B packed by m2k_pack_b_bf16[_bits] for this table's nr. */
void m2k_sgemm_bf16b(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                     const float *a, long lda, const uint16_t *bp, float *c, long ldc,
                     const float *bias, m2k_activation act, int accumulate);

/* IEEE binary16 ↔ binary32. To fp16: round to nearest, ties to even; overflow → ±inf;
 * NaN → quiet NaN keeping the top payload bits. To fp32: exact (subnormals included), a
 * signalling NaN comes back quiet (its payload otherwise kept), as F16C and NEON do. */
uint16_t m2k_f16_from_float(float v);
float m2k_f16_to_float(uint16_t h);

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

/* k->layernorm over `rows` rows, spread over the pool in bands of rows. */
void m2k_layernorm_rows(const m2k_kernels *k, m2k_pool *pool, const float *x, float *y,
                        const float *gamma, const float *beta, long rows, long cols, long ldx,
                        long ldy, float eps);

/* ---- depthwise convolutions (M²-CLIP adapters), channels last ----------------------- */

/* Conv1d over frames, kernel 3, zero padded: x, y (clips, frames, tokens, channels);
 * y[b,t,j,c] = bias[c] + Σ_{s∈{-1,0,1}} w[(s+1)·channels + c] · x[b,t+s,j,c]. w is (3, C):
 * the transpose of PyTorch's (C, 1, 3). */
void m2k_temporal_dwconv3(m2k_pool *pool, const float *x, float *y, long clips, long frames,
                          long tokens, long channels, const float *w, const float *bias);

/* 3×3 conv per frame over a height × width grid, zero padded: x, y (frames, h, w, C);
 * w is (9, C): the transpose of PyTorch's (C, 1, 3, 3). */
void m2k_spatial_dwconv3x3(m2k_pool *pool, const float *x, float *y, long frames, long height,
                           long width, long channels, const float *w, const float *bias);

/* ---- backward (training) ---------------------------------------------------------------
 * Gradients of the forward kernels above, for the trainer. Conventions: `d*` is the gradient
 * of the loss w.r.t. the tensor of that name; weight and bias gradients always accumulate
 * (+=), so one buffer sums the contributions of a whole step; input gradients are written, or
 * added when `accumulate` is set. Each has a scalar reference below (m2k_ref_*_backward). */

/* Input gradient of a Linear layer through its frozen, already packed fp32 weights:
 * dx(m × kdim, lddx) = [dx +] dy(m × n, lddy) · W, where W (n × kdim) is the forward's weight
 * (out = n, in = kdim) packed by m2k_pack_b(k->nr, n, kdim, W, kdim, M2K_B_NK, bp). No second
 * copy of W is kept: panels are re-laid out a slice at a time into a per-thread scratch. */
void m2k_sgemm_dx(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                  const float *dy, long lddy, const float *bp, float *dx, long lddx,
                  int accumulate);

/* Weight and bias gradients of a Linear layer y = x · Wᵀ + b:
 * dw(n × kdim, row-major, as PyTorch's (out, in)) += dyᵀ · x, dy (m × n, lddy), x (m × kdim,
 * ldx); db(n) += Σ_rows dy (db may be NULL). */
void m2k_sgemm_dw(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                  const float *dy, long lddy, const float *x, long ldx, float *dw, float *db);

/* LayerNorm backward from the forward's input x (mean and variance recomputed per row):
 * dx(rows × cols, lddx) = [dx +] ∂L/∂x; dgamma, dbeta (cols) += (either may be NULL: frozen). */
void m2k_layernorm_backward_rows(const m2k_kernels *k, m2k_pool *pool, const float *x, long ldx,
                                 const float *dy, long lddy, const float *gamma, float *dx,
                                 long lddx, float *dgamma, float *dbeta, long rows, long cols,
                                 float eps, int accumulate);

/* dx[i] = dy[i] · act'(x[i]) for the activation applied to pre-activation x (dx may be dy). */
void m2k_activation_backward(const m2k_kernels *k, m2k_pool *pool, m2k_activation act,
                             const float *x, const float *dy, float *dx, size_t n);

/* Backward of m2k_attention_queries: from the forward's qkv (seqs, tokens, 3·heads·head_dim)
 * and dout (seqs, queries, heads·head_dim, row stride ld_dout), writes dqkv (seqs, tokens,
 * 3·heads·head_dim, row stride ld_dqkv): dQ for the first `queries` rows (0 for the others),
 * dK and dV for all rows. Scores are recomputed per (sequence, head) task, never stored. */
void m2k_attention_backward(const m2k_kernels *k, m2k_pool *pool, long seqs, long tokens,
                            long queries, int heads, int head_dim, const float *qkv,
                            long ld_qkv, const float *dout, long ld_dout, float *dqkv,
                            long ld_dqkv, int causal);

/* Backward of m2k_temporal_dwconv3 from its input x: dx written (may be NULL), dw (3, C) and
 * dbias (C) accumulated (either may be NULL). */
void m2k_temporal_dwconv3_backward(m2k_pool *pool, const float *x, const float *dy, float *dx,
                                   long clips, long frames, long tokens, long channels,
                                   const float *w, float *dw, float *dbias);

/* Backward of m2k_spatial_dwconv3x3, the same conventions; w, dw are (9, C). */
void m2k_spatial_dwconv3x3_backward(m2k_pool *pool, const float *x, const float *dy, float *dx,
                                    long frames, long height, long width, long channels,
                                    const float *w, float *dw, float *dbias);

/* Measured peak of one core (the calling thread): fp32 FMA GFLOP/s with the widest vectors
 * this CPU runs, and AVX-512 VNNI vpdpbusd GOPS (2 ops per u8×s8 product); 0 where not
 * measured (no such instructions, or not x86). ~iterations × 24 instructions are timed. */
double m2k_peak_fp32_gflops(long iterations);
double m2k_peak_int8_gops(long iterations);
/* The same measured on every thread of the pool at once, summed (one task per thread). */
double m2k_peak_all_threads(m2k_pool *pool, int int8, long iterations);

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
/* Reuse of freed blocks of 1 MB and more while at least one user is active (the trainer: its
 * step frees and allocates the same large tensors every step, which would otherwise be
 * unmapped and faulted in again, zeroed by the kernel). begin raises the cached-bytes limit to
 * max_bytes (the largest any user asked for); the last end frees every cached block. Thread-safe. */
void m2k_alloc_cache_begin(size_t max_bytes);
void m2k_alloc_cache_end(void);
size_t m2k_alloc_cached_bytes(void);
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
void m2k_ref_f16_to_f32(const uint16_t *src, float *dst, size_t n); /* m2k_f16_to_float each */
void m2k_ref_bf16_to_f32(const uint16_t *src, float *dst, size_t n); /* m2k_bf16_to_float each */
/* Backward references (ref/backward_reference.c), sums in double. sgemm_dx takes W unpacked
 * (n × kdim, row stride ldw); the others have their drivers' conventions. */
void m2k_ref_sgemm_dx(long m, long n, long kdim, const float *dy, long lddy, const float *w,
                      long ldw, float *dx, long lddx, int accumulate);
void m2k_ref_sgemm_dw(long m, long n, long kdim, const float *dy, long lddy, const float *x,
                      long ldx, float *dw, float *db);
void m2k_ref_layernorm_backward(const float *x, long ldx, const float *dy, long lddy,
                                const float *gamma, float *dx, long lddx, float *dgamma,
                                float *dbeta, long rows, long cols, float eps, int accumulate);
void m2k_ref_activation_backward(m2k_activation act, const float *x, const float *dy,
                                 float *dx, size_t n);
void m2k_ref_attention_backward(long seqs, long tokens, long queries, int heads, int head_dim,
                                const float *qkv, long ld_qkv, const float *dout, long ld_dout,
                                float *dqkv, long ld_dqkv, int causal);
void m2k_ref_temporal_dwconv3_backward(const float *x, const float *dy, float *dx, long clips,
                                       long frames, long tokens, long channels, const float *w,
                                       float *dw, float *dbias);
void m2k_ref_spatial_dwconv3x3_backward(const float *x, const float *dy, float *dx, long frames,
                                        long height, long width, long channels, const float *w,
                                        float *dw, float *dbias);

/* ---- image resampling (Video module: CLIP preprocessing, frame rotation) ------------- */
/* Pillow's Image.resize(..., BICUBIC) on RGB24, bit-exact: two separable passes (rows, then
 * columns), each rounded to uint8. Usage, for an output window [x0, x0+w) × [y0, y0+h) of an
 * in_w × in_h → out_w × out_h resize:
 *
 *   int kx = m2k_bicubic_taps(in_w, out_w), ky = m2k_bicubic_taps(in_h, out_h);
 *   m2k_bicubic_coeffs(in_w, out_w, x0, w, xbounds, xcoeffs);   // xbounds (w, 2), xcoeffs (w, kx)
 *   m2k_bicubic_coeffs(in_h, out_h, y0, h, ybounds, ycoeffs);   // ybounds (h, 2), ycoeffs (h, ky)
 *   first = ybounds[0]; last = ybounds[2h-2] + ybounds[2h-1];   // input rows the window needs
 *   for each output row i: ybounds[2i] -= first;
 *   m2k_resample_rows_rgb8(src + first * stride, stride, in_w, last - first, tmp, 3 * w, w,
 *                          kx, xbounds, xcoeffs, rowscratch);
 *                          // rowscratch: m2k_resample_rows_scratch(in_w, w, kx) bytes
 *   m2k_resample_cols_rgb8(tmp, 3 * w, w, dst, dst_stride, h, ky, ybounds, ycoeffs,
 *                          colscratch);                          // colscratch: 3 · w int32
 *
 * A dimension that keeps its size is not resampled by Pillow: skip that pass. bounds hold
 * (first input sample, taps) per output sample; coeffs are fixed point with 22 fraction bits. */

/* Taps per output sample (Pillow's ksize), or -1 for a non-positive size. */
int m2k_bicubic_taps(int in_size, int out_size);
/* Fills bounds (out_count, 2) and coeffs (out_count, taps) for output samples
 * [out_first, out_first + out_count) of an in_size → out_size resize; returns taps, or -1. */
int m2k_bicubic_coeffs(int in_size, int out_size, int out_first, int out_count,
                       int32_t *bounds, int32_t *coeffs);
/* Bytes of scratch the horizontal pass needs. */
size_t m2k_resample_rows_scratch(int src_width, int out_count, int ksize);
/* Horizontal pass over `rows` rows of src_width RGB24 pixels → out_count pixels a row.
 * Never reads beyond the `rows` rows given. */
void m2k_resample_rows_rgb8(const uint8_t *src, long src_stride, int src_width, long rows,
                            uint8_t *dst, long dst_stride, int out_count, int ksize,
                            const int32_t *bounds, const int32_t *coeffs, uint8_t *scratch);
/* Vertical pass: out_count rows of `width` RGB24 pixels; bounds index rows of src. */
void m2k_resample_cols_rgb8(const uint8_t *src, long src_stride, int width, uint8_t *dst,
                            long dst_stride, int out_count, int ksize, const int32_t *bounds,
                            const int32_t *coeffs, int32_t *scratch);
/* The same two passes, always the portable build: the oracle for the AVX2 one. */
void m2k_ref_resample_rows_rgb8(const uint8_t *src, long src_stride, int src_width, long rows,
                                uint8_t *dst, long dst_stride, int out_count, int ksize,
                                const int32_t *bounds, const int32_t *coeffs, uint8_t *scratch);
void m2k_ref_resample_cols_rgb8(const uint8_t *src, long src_stride, int width, uint8_t *dst,
                                long dst_stride, int out_count, int ksize, const int32_t *bounds,
                                const int32_t *coeffs, int32_t *scratch);
/* RGB24 (height, width) → float (3, height, width): (v / 255 − mean[c]) / std[c]. */
void m2k_rgb8_to_chw_normalized(const uint8_t *src, long src_stride, int width, int height,
                                const float mean[3], const float std[3], float *dst);
/* Rotates an RGB24 image clockwise by 0, 90, 180 or 270 degrees (other values copy); dst is
 * height × width pixels for 90 and 270. */
void m2k_rgb8_rotate(const uint8_t *src, long src_stride, int width, int height,
                     int clockwise_degrees, uint8_t *dst, long dst_stride);

/* ---- int8 GEMM -------------------------------------------------------------------------
 *
 * y = act(x · Wᵀ + b) with W quantized once, symmetric, one scale per output channel, and x
 * quantized dynamically per row (token) inside the op:
 *   w_scale[n] = max_k |W[n,k]| / 127,  Wq[n,k] = round(W[n,k] / w_scale[n])   (int8, ±127)
 *   x_scale[m] = max_k |x[m,k]| / 127,  xq[m,k] = round(x[m,k] / x_scale[m])   (int8, ±127)
 *   y[m,n] = x_scale[m] · w_scale[n] · Σ_k xq[m,k] · Wq[n,k] + b[n]
 * Rounding is to nearest, ties to even (as lrintf in the default mode); an all-zero row has
 * scale 0 and quantizes to 0. The int32 sums are exact, so every variant must give the
 * reference's result up to the final float rounding. Variants may compute the sum as
 * Σ (xq + 128) · Wq − 128 · Σ_k Wq (u8 × s8 for vpdpbusd) with the column sums precomputed at
 * packing, or with sdot / smmla / widening multiplies; none may saturate. */

/* One int8 micro-kernel, as the tables list them (m2k_kernels.q8_kernels). It computes an
 * mr × nr tile of C from `groups` groups of kgroup k values:
 *   a: the quantized rows xq + a_offset (u8 when a_offset is 128, else s8; s16 when a_bytes
 *      is 2), either in place (a_panels 0: row i at a + i · lda bytes) or packed (a_panels 1:
 *      element (g · mr + i) · kgroup + t);
 *   b: a packed W panel, b[(g · nr + j) · kgroup + t] = Wq[j, g · kgroup + t];
 *   then C[i, j] (+)= a_scale[i] · w_scale[j] · (float)(Σ + b_offset[j]) + bias[j] (bias may
 *   be NULL; accumulate adds to C), with b_offset[j] = −a_offset · Σ_k Wq[j, k].
 * quantize turns one row of x into xq + a_offset (kpad elements, zero-padded past kdim) and
 * its scale, rounded as above, while it fetches `next` (the row it will quantize next, or
 * NULL) into the cache. */
typedef void (*m2k_q8_micro_fn)(long groups, const void *a, long lda, const int8_t *b,
                                const int32_t *b_offset, const float *a_scale,
                                const float *w_scale, const float *bias, float *c, long ldc,
                                int accumulate);
typedef struct m2k_q8_kernel {
    const char *name;        /* "avx512-vnni", "avx2-vnni", "avx2", "neon-i8mm", "neon-dot",
                              * "neon", "scalar" */
    int (*runs)(void);       /* nonzero when this CPU can run it */
    int mr, nr, kgroup;
    int a_offset;            /* 128 (u8 × s8, vpdpbusd) or 0 (s8 × s8) */
    int a_bytes;             /* 1, or 2: A as int16 (vpmaddwd; a_offset 0) */
    int a_panels;            /* A layout, see above */
    void (*quantize)(const float *x, long kdim, long kpad, int a_offset, uint8_t *q,
                     float *scale, const float *next);
    m2k_q8_micro_fn micro;
} m2k_q8_kernel;

/* Bytes for W (N × K) packed for this table's int8 kernel, scales and sums included. */
size_t m2k_q8_packed_bytes(const m2k_kernels *k, long n, long kdim);

/* Packs quantized weights Wq (N, K) row-major with their per-channel scales. */
void m2k_q8_pack(const m2k_kernels *k, long n, long kdim, const int8_t *wq, const float *w_scale,
                 void *packed);

/* The per-channel symmetric quantization above: wq (N, K), w_scale (N). */
void m2k_q8_quantize_weights(const float *w, long n, long kdim, int8_t *wq, float *w_scale);

/* C(M × N, ldc) = act(x(M × K, lda) · Wᵀ + bias), or C += x · Wᵀ + bias with accumulate
 * (then act must be NONE), with W packed by m2k_q8_pack for the same table. */
void m2k_q8_gemm(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim, const float *x,
                 long lda, const void *packed, float *c, long ldc, const float *bias,
                 m2k_activation act, int accumulate);

/* The oracle: the same arithmetic on unpacked Wq, straightforward loops. */
void m2k_ref_q8_gemm(long m, long n, long kdim, const float *x, long lda, const int8_t *wq,
                     const float *w_scale, float *c, long ldc, const float *bias,
                     m2k_activation act, int accumulate);

/* ---- bf16 GEMM ----------------------------------------------------------------------
 *
 * y = act(x · Wᵀ + b) with W rounded once to bf16 (at packing) and x rounded to bf16 per call,
 * both round-to-nearest-even from fp32; the products of two bf16 values are exact in fp32 and
 * are summed in fp32. Usage, for a Linear weight W (out, in):
 *
 *   void *wb = m2k_alloc(m2k_bf16_packed_bytes(k, out, in));
 *   m2k_bf16_pack(k, out, in, W, wb);                                    // once, at load
 *   m2k_bf16_gemm(k, pool, rows, out, in, x, in, wb, y, out, b, M2K_ACT_NONE, 0);
 *
 * A table with a native kernel that this CPU runs (AVX-512 BF16: vdpbf16ps) packs bf16 pairs
 * for it; every other table (or CPU) packs the rounded weights widened to fp32 for its sgemm
 * kernel. The blob records which, and lives in this process only. The native path converts
 * with vcvtne2ps2bf16 and sums with vdpbf16ps, which treat subnormal inputs as zero. */

/* A native bf16 micro-kernel: C(mr × nr, ldc) (+)= A · Bᵀ over `pairs` pairs of k values.
 * a: rows of bf16 (row i at a + i · lda elements), b: a packed panel,
 * b[(g · nr + j) · 2 + t] = W[j, 2g + t]. convert rounds one row of x to bf16 (kpad
 * elements, zero past kdim; kpad even). */
typedef struct m2k_bf16_kernel {
    const char *name;  /* "avx512-bf16" */
    int (*runs)(void); /* nonzero when this CPU can run it */
    int mr, nr;
    void (*micro)(long pairs, const uint16_t *a, long lda, const uint16_t *b, float *c,
                  long ldc, int load_c);
    void (*convert)(const float *x, long kdim, long kpad, uint16_t *out);
} m2k_bf16_kernel;

/* 1 when this table runs a native bf16 kernel on this CPU (AVX512_BF16), else 0. */
int m2k_bf16_native(const m2k_kernels *k);

/* Bytes for W (N × K) packed for this table by m2k_bf16_pack. */
size_t m2k_bf16_packed_bytes(const m2k_kernels *k, long n, long kdim);

/* Rounds W (N, K) row-major (a PyTorch Linear weight) to bf16 and packs it for this table. */
void m2k_bf16_pack(const m2k_kernels *k, long n, long kdim, const float *w, void *packed);

/* C(M × N, ldc) = act(x(M × K, lda) · Wᵀ + bias), or C += x · Wᵀ + bias with accumulate
 * (then act must be NONE), with W packed by m2k_bf16_pack for the same table. Runs on `pool`
 * (NULL, or a call from inside a pool task: the calling thread only). */
void m2k_bf16_gemm(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                   const float *x, long lda, const void *packed, float *c, long ldc,
                   const float *bias, m2k_activation act, int accumulate);

/* fp32 → bf16 bits, round to nearest even (NaN stays NaN, quiet). */
uint16_t m2k_bf16_from_float(float v);
float m2k_bf16_to_float(uint16_t b);

/* The oracle: W (N, K) unpacked fp32; W and x rounded to bf16 as above, sums in double. */
void m2k_ref_bf16_gemm(long m, long n, long kdim, const float *x, long lda, const float *w,
                       float *c, long ldc, const float *bias, m2k_activation act,
                       int accumulate);

#ifdef __cplusplus
}
#endif
#endif
