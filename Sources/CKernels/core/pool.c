/* A persistent thread pool. One job at a time: tasks are handed out through an atomic
 * counter; the caller works too. Idle workers sleep on a condition variable, so an idle
 * daemon burns no CPU. */
#include "internal.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct m2k_pool {
    int nthreads;            /* including the caller */
    pthread_t *threads;
    pthread_mutex_t lock;    /* guards everything below but the atomics */
    pthread_cond_t wake;     /* workers: a new job or shutdown */
    pthread_cond_t finished; /* caller: the last task of the job ended */
    pthread_mutex_t run_lock; /* one job at a time from any number of callers */
    unsigned long generation;
    int shutdown;
    int busy;                /* workers inside work(): a job is over only when it is 0 */
    m2k_task_fn fn;
    void *ctx;
    long ntasks;
    atomic_long next;
    atomic_long done;
};

static _Thread_local int in_task;

int m2k_in_pool_task(void) { return in_task; }

static void work(m2k_pool *pool, int worker) {
    long n = pool->ntasks;
    for (;;) {
        long t = atomic_fetch_add(&pool->next, 1);
        if (t >= n) break;
        pool->fn(pool->ctx, t, worker);
        if (atomic_fetch_add(&pool->done, 1) + 1 == n) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_broadcast(&pool->finished);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}

typedef struct { m2k_pool *pool; int index; } worker_arg;

static void *worker_main(void *p) {
    worker_arg arg = *(worker_arg *)p;
    free(p);
    m2k_pool *pool = arg.pool;
    in_task = 1;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->shutdown && pool->generation == seen)
            pthread_cond_wait(&pool->wake, &pool->lock);
        if (pool->shutdown) break;
        seen = pool->generation;
        pool->busy++;
        pthread_mutex_unlock(&pool->lock);
        work(pool, arg.index);
        pthread_mutex_lock(&pool->lock);
        if (--pool->busy == 0) pthread_cond_broadcast(&pool->finished);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

m2k_pool *m2k_pool_create(int nthreads) {
    if (nthreads < 1) { errno = EINVAL; return NULL; }
    m2k_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->nthreads = nthreads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->finished, NULL);
    pool->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (!pool->threads) { free(pool); errno = ENOMEM; return NULL; }
    for (int i = 1; i < nthreads; i++) {
        worker_arg *arg = malloc(sizeof *arg);
        int err = arg ? 0 : ENOMEM;
        if (arg) {
            *arg = (worker_arg){pool, i};
            err = pthread_create(&pool->threads[i], NULL, worker_main, arg);
            if (err) free(arg);
        }
        if (err) {
            pool->nthreads = i;
            m2k_pool_destroy(pool);
            errno = err;
            return NULL;
        }
    }
    return pool;
}

void m2k_pool_destroy(m2k_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    pool->shutdown = 1;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->nthreads; i++) pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->finished);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    free(pool->threads);
    free(pool);
}

int m2k_pool_threads(const m2k_pool *pool) { return pool ? pool->nthreads : 1; }

void m2k_pool_run(m2k_pool *pool, long ntasks, m2k_task_fn fn, void *ctx) {
    if (ntasks <= 0) return;
    if (!pool || pool->nthreads == 1 || ntasks == 1 || in_task) {
        int outer = in_task;
        in_task = 1;
        for (long t = 0; t < ntasks; t++) fn(ctx, t, 0);
        in_task = outer;
        return;
    }
    pthread_mutex_lock(&pool->run_lock);
    pthread_mutex_lock(&pool->lock);
    /* A worker that woke only after the previous job ended is still inside work() with
     * that job's ntasks; resetting `next` under it would lose a task (or run one past the
     * end). Let it see the exhausted counter and leave first. */
    while (pool->busy > 0) pthread_cond_wait(&pool->finished, &pool->lock);
    pool->fn = fn;
    pool->ctx = ctx;
    pool->ntasks = ntasks;
    atomic_store(&pool->next, 0);
    atomic_store(&pool->done, 0);
    pool->generation++;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);

    in_task = 1;
    work(pool, 0);
    in_task = 0;

    pthread_mutex_lock(&pool->lock);
    while (atomic_load(&pool->done) < ntasks || pool->busy > 0)
        pthread_cond_wait(&pool->finished, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    pthread_mutex_unlock(&pool->run_lock);
}
