/* Depthwise convolutions of M²-CLIP's adapters (spec §2), channels last so the inner loop
 * runs over contiguous channels and vectorises. Zero padding at the edges. */
#include "internal.h"
#include <string.h>

void m2k_temporal_dwconv3(const float *x, float *y, long clips, long frames, long tokens,
                          long channels, const float *w, const float *bias) {
    const long plane = tokens * channels; /* one frame */
    for (long b = 0; b < clips; b++) {
        for (long t = 0; t < frames; t++) {
            const float *cur = x + (b * frames + t) * plane;
            const float *prev = t > 0 ? cur - plane : NULL;
            const float *next = t + 1 < frames ? cur + plane : NULL;
            float *out = y + (b * frames + t) * plane;
            for (long j = 0; j < tokens; j++) {
                const long o = j * channels;
                for (long c = 0; c < channels; c++) {
                    float v = bias[c] + w[channels + c] * cur[o + c];
                    if (prev) v += w[c] * prev[o + c];
                    if (next) v += w[2 * channels + c] * next[o + c];
                    out[o + c] = v;
                }
            }
        }
    }
}

void m2k_spatial_dwconv3x3(const float *x, float *y, long frames, long height, long width,
                           long channels, const float *w, const float *bias) {
    for (long f = 0; f < frames; f++) {
        const float *in = x + f * height * width * channels;
        float *out = y + f * height * width * channels;
        for (long gy = 0; gy < height; gy++) {
            for (long gx = 0; gx < width; gx++) {
                float *o = out + (gy * width + gx) * channels;
                memcpy(o, bias, (size_t)channels * sizeof(float));
                for (long dy = -1; dy <= 1; dy++) {
                    long sy = gy + dy;
                    if (sy < 0 || sy >= height) continue;
                    for (long dx = -1; dx <= 1; dx++) {
                        long sx = gx + dx;
                        if (sx < 0 || sx >= width) continue;
                        const float *src = in + (sy * width + sx) * channels;
                        const float *wk = w + ((dy + 1) * 3 + (dx + 1)) * channels;
                        for (long c = 0; c < channels; c++) o[c] += wk[c] * src[c];
                    }
                }
            }
        }
    }
}
