/* Row-wise kernels spread over the pool: each task takes a contiguous band of rows. */
#include "internal.h"

enum { ROWS_PER_TASK = 64 };

typedef struct {
    const m2k_kernels *k;
    const float *x, *gamma, *beta;
    float *y;
    long rows, cols, ldx, ldy;
    float eps;
} layernorm_job;

static void layernorm_task(void *ctx, long task, int worker) {
    (void)worker;
    const layernorm_job *j = ctx;
    long r0 = task * ROWS_PER_TASK;
    long n = j->rows - r0 < ROWS_PER_TASK ? j->rows - r0 : ROWS_PER_TASK;
    j->k->layernorm(j->x + r0 * j->ldx, j->y + r0 * j->ldy, j->gamma, j->beta, n, j->cols, j->ldx,
                    j->ldy, j->eps);
}

void m2k_layernorm_rows(const m2k_kernels *k, m2k_pool *pool, const float *x, float *y,
                        const float *gamma, const float *beta, long rows, long cols, long ldx,
                        long ldy, float eps) {
    layernorm_job j = {.k = k, .x = x, .gamma = gamma, .beta = beta, .y = y, .rows = rows,
                       .cols = cols, .ldx = ldx, .ldy = ldy, .eps = eps};
    m2k_pool_run(pool, (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK, layernorm_task, &j);
}

/* ---- peaks on every thread at once -------------------------------------------------- */

typedef struct {
    int int8;
    long iterations;
    double results[256];
} peak_job;

static void peak_task(void *ctx, long task, int worker) {
    (void)worker;
    peak_job *j = ctx;
    if (task < 256)
        j->results[task] = j->int8 ? m2k_peak_int8_gops(j->iterations)
                                   : m2k_peak_fp32_gflops(j->iterations);
}

double m2k_peak_all_threads(m2k_pool *pool, int int8, long iterations) {
    peak_job j = {.int8 = int8, .iterations = iterations};
    long threads = m2k_pool_threads(pool);
    if (threads > 256) threads = 256;
    m2k_pool_run(pool, threads, peak_task, &j);
    double sum = 0;
    for (long t = 0; t < threads; t++) sum += j.results[t];
    return sum;
}
