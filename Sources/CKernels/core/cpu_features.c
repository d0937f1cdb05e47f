/* CPU feature detection: CPUID + XGETBV on x86 (the OS must have enabled the YMM/ZMM
 * state, not only the CPU advertise it), getauxval(AT_HWCAP) on AArch64. */
#include "internal.h"
#include <pthread.h>

static m2k_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long read_xcr0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1;
    features.fma = (c >> 12) & 1;
    features.f16c = (c >> 29) & 1;
    int avx = (c >> 28) & 1;
    if (osxsave && avx) {
        unsigned long long xcr0 = read_xcr0();
        features.os_avx = (xcr0 & 0x6) == 0x6;              /* XMM | YMM */
        features.os_avx512 = features.os_avx && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM hi */
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        features.avx2 = (b >> 5) & 1;
        features.avx512f = (b >> 16) & 1;
        features.avx512dq = (b >> 17) & 1;
        features.avx512bw = (b >> 30) & 1;
        features.avx512vl = (b >> 31) & 1;
        features.avx512vnni = (c >> 11) & 1;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
        features.avxvnni = (a >> 4) & 1;
        features.avx512bf16 = (a >> 5) & 1;
    }
    if (!features.os_avx) {
        features.avx2 = features.fma = features.f16c = features.avxvnni = 0;
    }
    if (!features.os_avx512) {
        features.avx512f = features.avx512dq = features.avx512bw = features.avx512vl = 0;
        features.avx512vnni = features.avx512bf16 = 0;
    }
}
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
static void detect(void) {
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    features.neon = (hw & HWCAP_ASIMD) != 0;
    features.asimddp = (hw & HWCAP_ASIMDDP) != 0;
    features.i8mm = (hw2 & HWCAP2_I8MM) != 0;
}
#else
static void detect(void) {}
#endif

const m2k_cpu_features *m2k_cpu(void) {
    pthread_once(&features_once, detect);
    return &features;
}
