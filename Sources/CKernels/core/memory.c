#include "internal.h"
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

/* Large-block reuse (m2k_alloc_cache_begin/end). glibc serves blocks past its mmap threshold
 * with mmap and gives them back with munmap, so a training step that frees and allocates the
 * same few-MB-to-77-MB tensors every step faults every page in again, zeroed by the kernel,
 * serially on the allocating thread (a quarter of a full-size step, measured). While a cache
 * user is active, freed blocks of at least CACHE_MIN bytes are kept, up to `cache_limit`
 * bytes in all, and handed out again for a request they fit with at most 25 % slack (best
 * fit). Contents are not cleared: callers initialise what they allocate, as with malloc. */
enum { CACHE_MIN = 1 << 20, CACHE_SLOTS = 1024 };
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static void *cache_ptr[CACHE_SLOTS];
static size_t cache_size[CACHE_SLOTS];
static int cache_count;
static size_t cache_bytes, cache_limit;
static int cache_users;

/* Read without the lock so allocation costs nothing extra while no one uses the cache. */
static int cache_active(void) { return __atomic_load_n(&cache_users, __ATOMIC_RELAXED) > 0; }

void *m2k_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes >= CACHE_MIN && cache_active()) {
        pthread_mutex_lock(&cache_lock);
        int best = -1;
        for (int i = 0; i < cache_count; i++)
            if (cache_size[i] >= bytes && cache_size[i] - bytes <= bytes / 4 &&
                (best < 0 || cache_size[i] < cache_size[best])) best = i;
        if (best >= 0) {
            p = cache_ptr[best];
            cache_bytes -= cache_size[best];
            cache_count--;
            cache_ptr[best] = cache_ptr[cache_count];
            cache_size[best] = cache_size[cache_count];
        }
        pthread_mutex_unlock(&cache_lock);
        if (p) return p;
    }
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

void m2k_free(void *p) {
    if (!p) return;
    size_t size = cache_active() ? malloc_usable_size(p) : 0;
    if (size >= CACHE_MIN) {
        pthread_mutex_lock(&cache_lock);
        if (cache_users > 0 && cache_count < CACHE_SLOTS && cache_bytes + size <= cache_limit) {
            cache_ptr[cache_count] = p;
            cache_size[cache_count] = size;
            cache_count++;
            cache_bytes += size;
            p = NULL;
        }
        pthread_mutex_unlock(&cache_lock);
    }
    free(p);
}

void m2k_alloc_cache_begin(size_t max_bytes) {
    pthread_mutex_lock(&cache_lock);
    __atomic_add_fetch(&cache_users, 1, __ATOMIC_RELAXED);
    if (max_bytes > cache_limit) cache_limit = max_bytes;
    pthread_mutex_unlock(&cache_lock);
}

void m2k_alloc_cache_end(void) {
    pthread_mutex_lock(&cache_lock);
    if (cache_users > 0 && __atomic_sub_fetch(&cache_users, 1, __ATOMIC_RELAXED) == 0) {
        for (int i = 0; i < cache_count; i++) free(cache_ptr[i]);
        cache_count = 0;
        cache_bytes = 0;
        cache_limit = 0;
    }
    pthread_mutex_unlock(&cache_lock);
}

size_t m2k_alloc_cached_bytes(void) {
    pthread_mutex_lock(&cache_lock);
    size_t bytes = cache_bytes;
    pthread_mutex_unlock(&cache_lock);
    return bytes;
}

/* Per-thread scratch: a few grow-only slots, released when the thread exits. Packing
 * buffers are reused this way so that steady-state inference does not allocate. */
/* 0: GEMM A panels, 1–2: attention, 3: int8 / bf16 activations, 4: GEMM fp16 B slice,
 * 5–7: backward (re-laid-out weight panels, attention probabilities and their gradients). */
enum { SCRATCH_SLOTS = 8 };
typedef struct { float *ptr[SCRATCH_SLOTS]; size_t size[SCRATCH_SLOTS]; } scratch_set;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *p) {
    scratch_set *s = p;
    for (int i = 0; i < SCRATCH_SLOTS; i++) free(s->ptr[i]);
    free(s);
}

static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_release); }

float *m2k_thread_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= SCRATCH_SLOTS) return NULL;
    pthread_once(&scratch_once, scratch_init);
    scratch_set *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        pthread_setspecific(scratch_key, s);
    }
    if (s->size[slot] < bytes) {
        free(s->ptr[slot]);
        s->ptr[slot] = m2k_alloc(bytes);
        s->size[slot] = s->ptr[slot] ? bytes : 0;
    }
    return s->ptr[slot];
}
