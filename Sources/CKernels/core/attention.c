/* Multi-head attention, one (sequence, head) per task: S = Q Kᵀ, softmax, O = S V, with K
 * and V packed on the fly into the same panels the weights use. Only one head's scores
 * (tokens × tokens) live in a thread's scratch at a time. */
#include "internal.h"
#include <math.h>

typedef struct {
    const m2k_kernels *k;
    long tokens, queries, ld_qkv, ld_out;
    int heads, head_dim, causal;
    const float *qkv;
    float *out;
} attention_job;

static void attention_task(void *ctx, long task, int worker) {
    (void)worker;
    const attention_job *j = ctx;
    const m2k_kernels *k = j->k;
    long s = task / j->heads;
    int h = (int)(task % j->heads);
    long t = j->tokens, width = (long)j->heads * j->head_dim;
    const float *base = j->qkv + s * t * j->ld_qkv + (long)h * j->head_dim;
    size_t kv_floats = m2k_packed_b_floats(k->nr, t > j->head_dim ? t : j->head_dim,
                                           t > j->head_dim ? t : j->head_dim);
    float *packed = m2k_thread_scratch(1, kv_floats * sizeof(float));
    long q = j->queries;
    float *scores = m2k_thread_scratch(2, (size_t)(q * t) * sizeof(float)); /* (q, t) */
    float *o = j->out + s * q * j->ld_out + (long)h * j->head_dim;

    /* scores = Q Kᵀ: K is (tokens, head_dim) = (N, K) */
    m2k_pack_b(k->nr, t, j->head_dim, base + width, j->ld_qkv, M2K_B_NK, packed);
    m2k_sgemm(k, NULL, q, t, j->head_dim, base, j->ld_qkv, packed, scores, t, NULL,
              M2K_ACT_NONE, 0);
    k->softmax(scores, q, t, t, 1.0f / sqrtf((float)j->head_dim), j->causal, 0);
    /* O = P V: V is (tokens, head_dim) = (K, N) */
    m2k_pack_b(k->nr, j->head_dim, t, base + 2 * width, j->ld_qkv, M2K_B_KN, packed);
    m2k_sgemm(k, NULL, q, j->head_dim, t, scores, t, packed, o, j->ld_out, NULL, M2K_ACT_NONE,
              0);
}

void m2k_attention_queries(const m2k_kernels *k, m2k_pool *pool, long seqs, long tokens,
                           long queries, int heads, int head_dim, const float *qkv,
                           long ld_qkv, float *out, long ld_out, int causal) {
    if (queries > tokens) queries = tokens;
    attention_job j = {.k = k, .tokens = tokens, .queries = queries, .ld_qkv = ld_qkv,
                       .ld_out = ld_out, .heads = heads, .head_dim = head_dim,
                       .causal = causal, .qkv = qkv, .out = out};
    m2k_pool_run(pool, seqs * heads, attention_task, &j);
}

void m2k_attention(const m2k_kernels *k, m2k_pool *pool, long seqs, long tokens, int heads,
                   int head_dim, const float *qkv, long ld_qkv, float *out, long ld_out,
                   int causal) {
    m2k_attention_queries(k, pool, seqs, tokens, tokens, heads, head_dim, qkv, ld_qkv, out,
                          ld_out, causal);
}
