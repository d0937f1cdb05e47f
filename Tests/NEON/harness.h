/* harness.h — what every NEON test program shares: ok/FAIL lines with counts, and a seeded
 * xorshift generator (define NEON_TEST_SEED before including to give each test its stream). */
#ifndef M2CLIP_NEON_HARNESS_H
#define M2CLIP_NEON_HARNESS_H

#include <stdarg.h>
#include <stdio.h>

static int passed, failed;
static char first_failure[400];

static void report(int ok, const char *fmt, ...) {
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("%s %s\n", ok ? "ok  " : "FAIL", line);
    if (ok) {
        passed++;
    } else {
        if (!failed) snprintf(first_failure, sizeof first_failure, "%s", line);
        failed++;
    }
}

static unsigned long long rng_state = NEON_TEST_SEED;

static float uniform(float lo, float hi) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (float)((rng_state >> 40) * (1.0 / 16777216.0));
}

#endif
