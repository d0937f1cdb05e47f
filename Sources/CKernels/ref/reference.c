/* Scalar reference of every kernel: straightforward loops, double accumulation where a
 * sum is long. Kept forever as the oracle that the SIMD variants are tested against. */
#include "kernels.h"
#include <math.h>
#include <string.h>

static float activate(float x, m2k_activation act) {
    switch (act) {
    case M2K_ACT_QUICKGELU: return x / (1.0f + expf(-1.702f * x));
    case M2K_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default: return x;
    }
}

void m2k_ref_gemm(long m, long n, long k, const float *a, long lda, const float *b, long ldb,
                  m2k_b_layout layout, float *c, long ldc, const float *bias,
                  m2k_activation act, int accumulate) {
    for (long i = 0; i < m; i++) {
        for (long j = 0; j < n; j++) {
            double sum = 0;
            for (long p = 0; p < k; p++) {
                float bv = layout == M2K_B_NK ? b[j * ldb + p] : b[p * ldb + j];
                sum += (double)a[i * lda + p] * bv;
            }
            float v = (float)sum + (bias ? bias[j] : 0.0f);
            if (accumulate) c[i * ldc + j] += v;
            else c[i * ldc + j] = activate(v, act);
        }
    }
}

void m2k_ref_bias_act(float *c, long ldc, int m, int n, const float *bias, m2k_activation act) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[i * ldc + j] = activate(c[i * ldc + j] + (bias ? bias[j] : 0.0f), act);
}

void m2k_ref_layernorm(const float *x, float *y, const float *gamma, const float *beta,
                       long rows, long cols, long ldx, long ldy, float eps) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        double mean = 0, var = 0;
        for (long j = 0; j < cols; j++) mean += xr[j];
        mean /= (double)cols;
        for (long j = 0; j < cols; j++) var += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        var /= (double)cols;
        float inv = (float)(1.0 / sqrt(var + eps));
        for (long j = 0; j < cols; j++)
            yr[j] = ((float)(xr[j] - mean)) * inv * gamma[j] + beta[j];
    }
}

void m2k_ref_softmax(float *x, long rows, long cols, long ld, float scale, int causal,
                     long causal_offset) {
    for (long r = 0; r < rows; r++) {
        float *xr = x + r * ld;
        long valid = causal ? r + causal_offset + 1 : cols;
        if (valid > cols) valid = cols;
        if (valid < 0) valid = 0;
        float mx = -INFINITY;
        for (long j = 0; j < valid; j++) if (xr[j] * scale > mx) mx = xr[j] * scale;
        double sum = 0;
        for (long j = 0; j < valid; j++) { xr[j] = expf(xr[j] * scale - mx); sum += xr[j]; }
        for (long j = 0; j < valid; j++) xr[j] = (float)(xr[j] / sum);
        for (long j = valid; j < cols; j++) xr[j] = 0.0f;
    }
}

void m2k_ref_quickgelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = activate(x[i], M2K_ACT_QUICKGELU);
}

void m2k_ref_gelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = activate(x[i], M2K_ACT_GELU);
}

void m2k_ref_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void m2k_ref_attention(long seqs, long tokens, int heads, int head_dim, const float *qkv,
                       long ld_qkv, float *out, long ld_out, int causal) {
    long width = (long)heads * head_dim;
    float scale = 1.0f / sqrtf((float)head_dim);
    double scores[tokens > 0 ? tokens : 1];
    for (long s = 0; s < seqs; s++) {
        const float *base = qkv + s * tokens * ld_qkv;
        for (int h = 0; h < heads; h++) {
            for (long i = 0; i < tokens; i++) {
                const float *q = base + i * ld_qkv + (long)h * head_dim;
                long valid = causal ? i + 1 : tokens;
                double mx = -INFINITY;
                for (long j = 0; j < valid; j++) {
                    const float *kv = base + j * ld_qkv + width + (long)h * head_dim;
                    double dot = 0;
                    for (int d = 0; d < head_dim; d++) dot += (double)q[d] * kv[d];
                    scores[j] = dot * scale;
                    if (scores[j] > mx) mx = scores[j];
                }
                double sum = 0;
                for (long j = 0; j < valid; j++) { scores[j] = exp(scores[j] - mx); sum += scores[j]; }
                float *o = out + (s * tokens + i) * ld_out + (long)h * head_dim;
                for (int d = 0; d < head_dim; d++) {
                    double acc = 0;
                    for (long j = 0; j < valid; j++)
                        acc += scores[j] * base[j * ld_qkv + 2 * width + (long)h * head_dim + d];
                    o[d] = (float)(acc / sum);
                }
            }
        }
    }
}
