/* Depthwise convolutions of M²-CLIP's adapters (spec §2), channels last so the inner loop
 * runs over contiguous channels and vectorises. Zero padding at the edges. One pool task per
 * output frame. */
#include "internal.h"
#include <string.h>

typedef struct {
    const float *x, *w, *bias;
    float *y;
    long frames, tokens, height, width, channels;
} dwconv_job;

/* Output frame `task` = (clip, t) of the temporal conv. */
static void temporal_task(void *ctx, long task, int worker) {
    (void)worker;
    const dwconv_job *job = ctx;
    const long channels = job->channels, plane = job->tokens * channels; /* one frame */
    const long t = task % job->frames;
    const float *w = job->w, *bias = job->bias;
    const float *cur = job->x + task * plane;
    const float *prev = t > 0 ? cur - plane : NULL;
    const float *next = t + 1 < job->frames ? cur + plane : NULL;
    float *out = job->y + task * plane;
    for (long token = 0; token < job->tokens; token++) {
        const long o = token * channels;
        for (long c = 0; c < channels; c++) {
            float v = bias[c] + w[channels + c] * cur[o + c];
            if (prev) v += w[c] * prev[o + c];
            if (next) v += w[2 * channels + c] * next[o + c];
            out[o + c] = v;
        }
    }
}

void m2k_temporal_dwconv3(m2k_pool *pool, const float *x, float *y, long clips, long frames,
                          long tokens, long channels, const float *w, const float *bias) {
    dwconv_job job = {.x = x, .w = w, .bias = bias, .y = y, .frames = frames, .tokens = tokens,
                      .channels = channels};
    m2k_pool_run(pool, clips * frames, temporal_task, &job);
}

/* Output frame `f` of the spatial 3×3 conv. */
static void spatial_task(void *ctx, long f, int worker) {
    (void)worker;
    const dwconv_job *job = ctx;
    const long height = job->height, width = job->width, channels = job->channels;
    const float *in = job->x + f * height * width * channels;
    float *out = job->y + f * height * width * channels;
    for (long gy = 0; gy < height; gy++) {
        for (long gx = 0; gx < width; gx++) {
            float *o = out + (gy * width + gx) * channels;
            memcpy(o, job->bias, (size_t)channels * sizeof(float));
            for (long dy = -1; dy <= 1; dy++) {
                long sy = gy + dy;
                if (sy < 0 || sy >= height) continue;
                for (long dx = -1; dx <= 1; dx++) {
                    long sx = gx + dx;
                    if (sx < 0 || sx >= width) continue;
                    const float *src = in + (sy * width + sx) * channels;
                    const float *wk = job->w + ((dy + 1) * 3 + (dx + 1)) * channels;
                    for (long c = 0; c < channels; c++) o[c] += wk[c] * src[c];
                }
            }
        }
    }
}

void m2k_spatial_dwconv3x3(m2k_pool *pool, const float *x, float *y, long frames, long height,
                           long width, long channels, const float *w, const float *bias) {
    dwconv_job job = {.x = x, .w = w, .bias = bias, .y = y, .frames = frames, .height = height,
                      .width = width, .channels = channels};
    m2k_pool_run(pool, frames, spatial_task, &job);
}
