/* One table of function pointers per variant, chosen once: the best this CPU runs, or
 * the one named by M2CLIP_KERNELS so that one machine can test every variant. */
#include "internal.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const m2k_kernels *m2k_variant_kernels(m2k_variant v) {
    const m2k_cpu_features *f = m2k_cpu();
    switch (v) {
    case M2K_VARIANT_SCALAR: return &m2k_scalar_kernels;
#if defined(__x86_64__)
    /* F16C widens fp16 weights (f16_to_f32); every AVX2 CPU shipped has it. */
    case M2K_VARIANT_AVX2: return f->avx2 && f->fma && f->f16c ? &m2k_avx2_kernels : NULL;
    case M2K_VARIANT_AVX512:
        return f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl && f->f16c
                   ? &m2k_avx512_kernels
                   : NULL;
#endif
#if defined(__aarch64__)
    case M2K_VARIANT_NEON: return f->neon ? &m2k_neon_kernels : NULL;
#endif
    default: (void)f; return NULL;
    }
}

static const m2k_kernels *active;
static char dispatch_error[160];
static pthread_once_t active_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    static const char *names[M2K_VARIANT_COUNT] = {"scalar", "avx2", "avx512", "neon"};
    for (int v = M2K_VARIANT_COUNT - 1; v >= 0 && !active; v--)
        active = m2k_variant_kernels((m2k_variant)v);
    const char *want = getenv("M2CLIP_KERNELS");
    if (!want || !*want) return;
    for (int v = 0; v < M2K_VARIANT_COUNT; v++) {
        if (strcmp(want, names[v]) != 0) continue;
        const m2k_kernels *k = m2k_variant_kernels((m2k_variant)v);
        if (k) { active = k; return; }
        snprintf(dispatch_error, sizeof dispatch_error,
                 "M2CLIP_KERNELS=%s: this CPU or build cannot run it; using %s", want,
                 active->name);
        return;
    }
    snprintf(dispatch_error, sizeof dispatch_error,
             "M2CLIP_KERNELS=%s: unknown variant (scalar, avx2, avx512, neon); using %s", want,
             active->name);
}

const m2k_kernels *m2k_active(void) {
    pthread_once(&active_once, choose);
    return active;
}

const char *m2k_dispatch_error(void) {
    m2k_active();
    return dispatch_error[0] ? dispatch_error : NULL;
}
