/* Image resampling for the Video module: Pillow's bicubic resize, bit for bit.
 *
 * Pillow (libImaging/Resample.c) resizes 8-bit images in two separable passes, horizontal
 * then vertical, each rounded and clipped back to uint8. The cubic kernel (a = -0.5, support
 * 2) is stretched by the downscale factor, so a reduction averages every input it covers
 * (antialiasing). Weights are normalised per output sample in double, then fixed to
 * PRECISION_BITS fractional bits; sums start at one half and are shifted back. Computing a
 * window of the output (only the pixels a centre crop keeps) gives the same values as
 * resizing everything and cropping, because every output sample has its own weights.
 *
 * Portable C with generic vector types (SSE2 / NEON at the baseline), plus the same loops
 * compiled for AVX2 and picked at run time; m2k_ref_* always run the portable build. */
#include "kernels.h"
#include <math.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

/* Pillow's bicubic_filter. */
static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

int m2k_bicubic_taps(int in_size, int out_size) {
    if (in_size <= 0 || out_size <= 0) return -1;
    double filterscale = (double)in_size / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    return (int)ceil(2.0 * filterscale) * 2 + 1;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box (0, in_size), restricted to
 * output samples [out_first, out_first + out_count). */
int m2k_bicubic_coeffs(int in_size, int out_size, int out_first, int out_count,
                       int32_t *bounds, int32_t *coeffs) {
    int ksize = m2k_bicubic_taps(in_size, out_size);
    if (ksize < 0 || out_first < 0 || out_count < 0 || out_first + out_count > out_size)
        return -1;
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    double weights[ksize];
    for (int i = 0; i < out_count; i++) {
        int xx = out_first + i;
        double center = (xx + 0.5) * scale;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            weights[x] = w;
            ww += w;
        }
        int32_t *k = coeffs + (long)i * ksize;
        for (int x = 0; x < ksize; x++) {
            double w = x < xmax ? (ww != 0.0 ? weights[x] / ww : weights[x]) : 0.0;
            k[x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        bounds[2 * i] = xmin;
        bounds[2 * i + 1] = xmax;
    }
    return ksize;
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* Two taps at a time: an 8-byte load at pixel t of an RGB24 row holds taps t and t+1 in lanes
 * 0-2 and 3-5 (lanes 6-7 get weight 0), so no widened copy of the row is needed. */
typedef int32_t i32x8 __attribute__((vector_size(32), aligned(4)));
typedef uint8_t u8x8 __attribute__((vector_size(8), aligned(1)));

size_t m2k_resample_rows_scratch(int src_width, int out_count, int ksize) {
    size_t pairs = (size_t)(ksize + 1) / 2;
    return (size_t)out_count * pairs * sizeof(i32x8) + 3 * (size_t)src_width + 16;
}

static inline __attribute__((always_inline)) void
rows_body(const uint8_t *src, long src_stride, int src_width, long rows, uint8_t *dst,
          long dst_stride, int out_count, int ksize, const int32_t *bounds,
          const int32_t *coeffs, uint8_t *scratch) {
    int pairs = (ksize + 1) / 2;
    i32x8 *expanded = (i32x8 *)scratch; /* (out_count, pairs): {k0 k0 k0 k1 k1 k1 0 0} */
    uint8_t *tail = scratch + (size_t)out_count * pairs * sizeof(i32x8);
    for (int i = 0; i < out_count; i++) {
        const int32_t *k = coeffs + (long)i * ksize;
        for (int j = 0; j < pairs; j++) {
            int32_t k0 = k[2 * j], k1 = 2 * j + 1 < ksize ? k[2 * j + 1] : 0;
            expanded[(long)i * pairs + j] = (i32x8){k0, k0, k0, k1, k1, k1, 0, 0};
        }
    }
    for (long r = 0; r < rows; r++) {
        const uint8_t *s = src + r * src_stride;
        if (r == rows - 1 || src_width < 3) {
            /* Loads run up to 5 bytes past a row's end, into the next row: the last row (and
             * rows too short for that) get a padded copy. */
            memcpy(tail, s, 3 * (size_t)src_width);
            memset(tail + 3 * (size_t)src_width, 0, 16);
            s = tail;
        }
        uint8_t *d = dst + r * dst_stride;
        for (int i = 0; i < out_count; i++) {
            const uint8_t *p = s + 3 * bounds[2 * i];
            const i32x8 *k = expanded + (long)i * pairs;
            int n = (bounds[2 * i + 1] + 1) / 2;
            i32x8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int j = 0; j < n; j++) {
                u8x8 v = *(const u8x8 *)(p + 6 * j);
                acc += __builtin_convertvector(v, i32x8) * k[j];
            }
            const int32_t half = 1 << (PRECISION_BITS - 1);
            d[3 * i + 0] = clip8(half + acc[0] + acc[3]);
            d[3 * i + 1] = clip8(half + acc[1] + acc[4]);
            d[3 * i + 2] = clip8(half + acc[2] + acc[5]);
        }
    }
}

static inline __attribute__((always_inline)) void
cols_body(const uint8_t *src, long src_stride, int width, uint8_t *dst, long dst_stride,
          int out_count, int ksize, const int32_t *bounds, const int32_t *coeffs,
          int32_t *scratch) {
    long n = 3L * width;
    for (int i = 0; i < out_count; i++) {
        const int32_t *k = coeffs + (long)i * ksize;
        const uint8_t *base = src + (long)bounds[2 * i] * src_stride;
        int taps = bounds[2 * i + 1];
        for (long x = 0; x < n; x++) scratch[x] = 1 << (PRECISION_BITS - 1);
        for (int t = 0; t < taps; t++) {
            const uint8_t *row = base + t * src_stride;
            int32_t c = k[t];
            for (long x = 0; x < n; x++) scratch[x] += row[x] * c;
        }
        uint8_t *d = dst + (long)i * dst_stride;
        for (long x = 0; x < n; x++) d[x] = clip8(scratch[x]);
    }
}

void m2k_ref_resample_rows_rgb8(const uint8_t *src, long src_stride, int src_width, long rows,
                                uint8_t *dst, long dst_stride, int out_count, int ksize,
                                const int32_t *bounds, const int32_t *coeffs, uint8_t *scratch) {
    rows_body(src, src_stride, src_width, rows, dst, dst_stride, out_count, ksize, bounds,
              coeffs, scratch);
}

void m2k_ref_resample_cols_rgb8(const uint8_t *src, long src_stride, int width, uint8_t *dst,
                                long dst_stride, int out_count, int ksize, const int32_t *bounds,
                                const int32_t *coeffs, int32_t *scratch) {
    cols_body(src, src_stride, width, dst, dst_stride, out_count, ksize, bounds, coeffs, scratch);
}

#if defined(__x86_64__) || defined(__i386__)
/* The same loops compiled for AVX2 (8-lane vpmulld; baseline x86-64 has no 32-bit vector
 * multiply). Chosen when the active kernel table is AVX2 or AVX-512, so M2CLIP_KERNELS=scalar
 * also selects the portable build here. */
__attribute__((target("avx2"))) static void
rows_avx2(const uint8_t *src, long src_stride, int src_width, long rows, uint8_t *dst,
          long dst_stride, int out_count, int ksize, const int32_t *bounds,
          const int32_t *coeffs, uint8_t *scratch) {
    rows_body(src, src_stride, src_width, rows, dst, dst_stride, out_count, ksize, bounds,
              coeffs, scratch);
}

__attribute__((target("avx2"))) static void
cols_avx2(const uint8_t *src, long src_stride, int width, uint8_t *dst, long dst_stride,
          int out_count, int ksize, const int32_t *bounds, const int32_t *coeffs,
          int32_t *scratch) {
    cols_body(src, src_stride, width, dst, dst_stride, out_count, ksize, bounds, coeffs, scratch);
}

static int use_avx2(void) {
    m2k_variant v = m2k_active()->variant;
    return v == M2K_VARIANT_AVX2 || v == M2K_VARIANT_AVX512;
}
#endif

void m2k_resample_rows_rgb8(const uint8_t *src, long src_stride, int src_width, long rows,
                            uint8_t *dst, long dst_stride, int out_count, int ksize,
                            const int32_t *bounds, const int32_t *coeffs, uint8_t *scratch) {
#if defined(__x86_64__) || defined(__i386__)
    if (use_avx2()) {
        rows_avx2(src, src_stride, src_width, rows, dst, dst_stride, out_count, ksize, bounds,
                  coeffs, scratch);
        return;
    }
#endif
    rows_body(src, src_stride, src_width, rows, dst, dst_stride, out_count, ksize, bounds,
              coeffs, scratch);
}

void m2k_resample_cols_rgb8(const uint8_t *src, long src_stride, int width, uint8_t *dst,
                            long dst_stride, int out_count, int ksize, const int32_t *bounds,
                            const int32_t *coeffs, int32_t *scratch) {
#if defined(__x86_64__) || defined(__i386__)
    if (use_avx2()) {
        cols_avx2(src, src_stride, width, dst, dst_stride, out_count, ksize, bounds, coeffs,
                  scratch);
        return;
    }
#endif
    cols_body(src, src_stride, width, dst, dst_stride, out_count, ksize, bounds, coeffs, scratch);
}

void m2k_rgb8_to_chw_normalized(const uint8_t *src, long src_stride, int width, int height,
                                const float mean[3], const float std[3], float *dst) {
    for (int c = 0; c < 3; c++) {
        /* (v / 255 - mean) / std, as torchvision's ToTensor + Normalize compute it. */
        float m = mean[c], sd = std[c];
        float *plane = dst + (long)c * width * height;
        for (int y = 0; y < height; y++) {
            const uint8_t *s = src + y * src_stride + c;
            float *d = plane + (long)y * width;
            for (int x = 0; x < width; x++) d[x] = ((float)s[3 * x] / 255.0f - m) / sd;
        }
    }
}

/* 90° and 270° turns go tile by tile, so reads and writes both stay within a few cache lines
 * (a plain column-by-column transpose of a 1080p frame misses on every pixel). */
#define ROTATE_TILE 16

void m2k_rgb8_rotate(const uint8_t *src, long src_stride, int width, int height,
                     int clockwise_degrees, uint8_t *dst, long dst_stride) {
    if (clockwise_degrees == 90 || clockwise_degrees == 270) {
        /* 90: dst(x', y') = src(x = y', y = height − 1 − x'); 270: src(x = width − 1 − y', y = x') */
        for (int ty = 0; ty < height; ty += ROTATE_TILE) {
            int y_end = ty + ROTATE_TILE < height ? ty + ROTATE_TILE : height;
            for (int tx = 0; tx < width; tx += ROTATE_TILE) {
                int x_end = tx + ROTATE_TILE < width ? tx + ROTATE_TILE : width;
                for (int x = tx; x < x_end; x++) {
                    uint8_t *d = clockwise_degrees == 90 ? dst + (long)x * dst_stride
                                                         : dst + (long)(width - 1 - x) * dst_stride;
                    for (int y = ty; y < y_end; y++) {
                        const uint8_t *s = src + (long)y * src_stride + 3L * x;
                        long column = clockwise_degrees == 90 ? 3L * (height - 1 - y) : 3L * y;
                        d[column + 0] = s[0];
                        d[column + 1] = s[1];
                        d[column + 2] = s[2];
                    }
                }
            }
        }
        return;
    }
    if (clockwise_degrees == 180) {
        for (int y = 0; y < height; y++) {
            const uint8_t *s = src + y * src_stride;
            uint8_t *d = dst + (long)(height - 1 - y) * dst_stride;
            for (int x = 0; x < width; x++) memcpy(d + 3L * (width - 1 - x), s + 3 * x, 3);
        }
        return;
    }
    for (int y = 0; y < height; y++) memcpy(dst + y * dst_stride, src + y * src_stride, 3L * width);
}
