/* Scalar references of the backward kernels (kernels.h, "backward"): the oracle the fast
 * drivers in core/backward.c and the variants' row kernels are tested against. Each restates
 * the forward line it differentiates. */
#include "kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* forward: y[i,j] = Σ_k x[i,k] · W[j,k] + b[j]  ⇒  dx[i,k] = Σ_j dy[i,j] · W[j,k] */
void m2k_ref_sgemm_dx(long m, long n, long kdim, const float *dy, long lddy, const float *w,
                      long ldw, float *dx, long lddx, int accumulate) {
    for (long i = 0; i < m; i++)
        for (long k = 0; k < kdim; k++) {
            double s = accumulate ? dx[i * lddx + k] : 0.0;
            for (long j = 0; j < n; j++) s += (double)dy[i * lddy + j] * w[j * ldw + k];
            dx[i * lddx + k] = (float)s;
        }
}

/* dW[j,k] += Σ_i dy[i,j] · x[i,k];  db[j] += Σ_i dy[i,j] */
void m2k_ref_sgemm_dw(long m, long n, long kdim, const float *dy, long lddy, const float *x,
                      long ldx, float *dw, float *db) {
    for (long j = 0; j < n; j++) {
        for (long k = 0; k < kdim; k++) {
            double s = 0;
            for (long i = 0; i < m; i++) s += (double)dy[i * lddy + j] * x[i * ldx + k];
            dw[j * kdim + k] += (float)s;
        }
        if (db) {
            double s = 0;
            for (long i = 0; i < m; i++) s += dy[i * lddy + j];
            db[j] += (float)s;
        }
    }
}

/* forward: x̂ = (x − μ) / σ, y = x̂ · γ + β, σ = sqrt(var + eps)
 * ⇒ dx̂ = dy · γ;  dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)) / σ;  dγ += dy · x̂;  dβ += dy */
void m2k_ref_layernorm_backward(const float *x, long ldx, const float *dy, long lddy,
                                const float *gamma, float *dx, long lddx, float *dgamma,
                                float *dbeta, long rows, long cols, float eps, int accumulate) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * ldx, *g = dy + r * lddy;
        double mean = 0, var = 0;
        for (long c = 0; c < cols; c++) mean += xr[c];
        mean /= (double)cols;
        for (long c = 0; c < cols; c++) var += (xr[c] - mean) * (xr[c] - mean);
        var /= (double)cols;
        double inv = 1.0 / sqrt(var + eps), mdx = 0, mdxx = 0;
        for (long c = 0; c < cols; c++) {
            double xh = (xr[c] - mean) * inv, dxh = (double)g[c] * gamma[c];
            mdx += dxh;
            mdxx += dxh * xh;
            if (dgamma) dgamma[c] += (float)(g[c] * xh);
            if (dbeta) dbeta[c] += g[c];
        }
        mdx /= (double)cols;
        mdxx /= (double)cols;
        if (!dx) continue;
        float *out = dx + r * lddx;
        for (long c = 0; c < cols; c++) {
            double xh = (xr[c] - mean) * inv;
            double v = ((double)g[c] * gamma[c] - mdx - xh * mdxx) * inv;
            out[c] = (float)(accumulate ? out[c] + v : v);
        }
    }
}

/* forward QuickGELU: y = x · σ(1.702 x)  ⇒  y' = σ(1.702x) · (1 + 1.702 x (1 − σ(1.702x)))
 * forward GELU: y = x · Φ(x)  ⇒  y' = Φ(x) + x · φ(x) */
void m2k_ref_activation_backward(m2k_activation act, const float *x, const float *dy,
                                 float *dx, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v = x[i], d;
        switch (act) {
        case M2K_ACT_QUICKGELU: {
            double s = 1.0 / (1.0 + exp(-1.702 * v));
            d = s * (1.0 + 1.702 * v * (1.0 - s));
            break;
        }
        case M2K_ACT_GELU:
            d = 0.5 * (1.0 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
            break;
        default: d = 1.0; break;
        }
        dx[i] = (float)(dy[i] * d);
    }
}

/* forward, per sequence and head: S = Q Kᵀ / √d (masked), P = softmax(S), O = P V
 * ⇒ dV = Pᵀ dO;  dP = dO Vᵀ;  dS = P ⊙ (dP − Σ_j dP ⊙ P) / √d;  dQ = dS K;  dK = dSᵀ Q */
void m2k_ref_attention_backward(long seqs, long tokens, long queries, int heads, int head_dim,
                                const float *qkv, long ld_qkv, const float *dout, long ld_dout,
                                float *dqkv, long ld_dqkv, int causal) {
    const long t = tokens, d = head_dim, width = (long)heads * head_dim;
    const long q = queries < tokens ? queries : tokens;
    const double scale = 1.0 / sqrt((double)d);
    double *p = malloc(sizeof(double) * (size_t)(q * t)), *ds = malloc(sizeof(double) * (size_t)(q * t));
    if (!p || !ds) { free(p); free(ds); return; }
    for (long s = 0; s < seqs; s++) {
        const float *base = qkv + s * t * ld_qkv;
        const float *g = dout + s * q * ld_dout;
        float *gbase = dqkv + s * t * ld_dqkv;
        for (long r = 0; r < t; r++) memset(gbase + r * ld_dqkv, 0, sizeof(float) * (size_t)(3 * width));
        for (int h = 0; h < heads; h++) {
            const long off = (long)h * d;
            for (long i = 0; i < q; i++) {
                long valid = causal ? (i + 1 < t ? i + 1 : t) : t;
                double mx = -INFINITY, sum = 0;
                for (long j = 0; j < t; j++) {
                    double v = -INFINITY;
                    if (j < valid) {
                        v = 0;
                        for (long c = 0; c < d; c++)
                            v += (double)base[i * ld_qkv + off + c] * base[j * ld_qkv + width + off + c];
                        v *= scale;
                    }
                    p[i * t + j] = v;
                    if (v > mx) mx = v;
                }
                for (long j = 0; j < t; j++) {
                    p[i * t + j] = j < valid ? exp(p[i * t + j] - mx) : 0;
                    sum += p[i * t + j];
                }
                double dot = 0;
                for (long j = 0; j < t; j++) {
                    p[i * t + j] /= sum;
                    double dp = 0;
                    for (long c = 0; c < d; c++)
                        dp += (double)g[i * ld_dout + off + c] * base[j * ld_qkv + 2 * width + off + c];
                    ds[i * t + j] = dp;
                    dot += dp * p[i * t + j];
                }
                for (long j = 0; j < t; j++) ds[i * t + j] = p[i * t + j] * (ds[i * t + j] - dot) * scale;
            }
            for (long i = 0; i < q; i++)
                for (long c = 0; c < d; c++) {
                    double v = 0;
                    for (long j = 0; j < t; j++) v += ds[i * t + j] * base[j * ld_qkv + width + off + c];
                    gbase[i * ld_dqkv + off + c] = (float)v;
                }
            for (long j = 0; j < t; j++)
                for (long c = 0; c < d; c++) {
                    double dk = 0, dv = 0;
                    for (long i = 0; i < q; i++) {
                        dk += ds[i * t + j] * base[i * ld_qkv + off + c];
                        dv += p[i * t + j] * g[i * ld_dout + off + c];
                    }
                    gbase[j * ld_dqkv + width + off + c] = (float)dk;
                    gbase[j * ld_dqkv + 2 * width + off + c] = (float)dv;
                }
        }
    }
    free(p);
    free(ds);
}

/* forward: y[b,t,j,c] = bias[c] + Σ_s w[s+1,c] · x[b,t+s,j,c]
 * ⇒ dx[b,t,j,c] = Σ_s w[s+1,c] · dy[b,t−s,j,c];  dw[s+1,c] += Σ dy[b,t,j,c] · x[b,t+s,j,c] */
void m2k_ref_temporal_dwconv3_backward(const float *x, const float *dy, float *dx, long clips,
                                       long frames, long tokens, long channels, const float *w,
                                       float *dw, float *dbias) {
    const long plane = tokens * channels;
    for (long b = 0; b < clips; b++)
        for (long t = 0; t < frames; t++)
            for (long i = 0; i < plane; i++) {
                const long c = i % channels, at = (b * frames + t) * plane + i;
                if (dx) {
                    double v = 0;
                    for (int s = -1; s <= 1; s++) {
                        long src = t - s;
                        if (src >= 0 && src < frames) v += (double)w[(s + 1) * channels + c] * dy[at - s * plane];
                    }
                    dx[at] = (float)v;
                }
                if (dbias) dbias[c] += dy[at];
                if (dw)
                    for (int s = -1; s <= 1; s++) {
                        long src = t + s;
                        if (src >= 0 && src < frames) dw[(s + 1) * channels + c] += dy[at] * x[at + s * plane];
                    }
            }
}

/* forward: y[f,gy,gx,c] = bias[c] + Σ_{a,b} w[(a+1)·3+b+1, c] · x[f, gy+a, gx+b, c] */
void m2k_ref_spatial_dwconv3x3_backward(const float *x, const float *dy, float *dx, long frames,
                                        long height, long width, long channels, const float *w,
                                        float *dw, float *dbias) {
    if (dx) memset(dx, 0, sizeof(float) * (size_t)(frames * height * width * channels));
    for (long f = 0; f < frames; f++)
        for (long gy = 0; gy < height; gy++)
            for (long gx = 0; gx < width; gx++)
                for (long c = 0; c < channels; c++) {
                    const long at = ((f * height + gy) * width + gx) * channels + c;
                    const float g = dy[at];
                    if (dbias) dbias[c] += g;
                    for (int a = -1; a <= 1; a++)
                        for (int b = -1; b <= 1; b++) {
                            long sy = gy + a, sx = gx + b;
                            if (sy < 0 || sy >= height || sx < 0 || sx >= width) continue;
                            const long src = ((f * height + sy) * width + sx) * channels + c;
                            const long tap = ((a + 1) * 3 + (b + 1)) * channels + c;
                            if (dx) dx[src] += w[tap] * g;
                            if (dw) dw[tap] += g * x[src];
                        }
                }
}
