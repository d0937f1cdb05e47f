#include "internal.h"
#include <pthread.h>
#include <stdlib.h>

void *m2k_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

void m2k_free(void *p) { free(p); }

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
