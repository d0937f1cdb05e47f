/* The fp16 and bf16 conversions and the fp16- and bf16-weight GEMMs of the active table
 * (NEON under scripts/test-neon.sh) against the scalar oracle. The table checks run once per
 * format through `half_format` (conversion, packing, GEMM). Checks:
 *   - m2k_f16_to_float on fixed values (±0, the smallest subnormal, 1, 65504, ±inf, NaN);
 *     m2k_f16_from_float rounds every midpoint between two fp16 neighbours to the even one,
 *     and the floats one ulp either side to the nearer one; it inverts m2k_f16_to_float;
 *   - k->f16_to_f32 on all 65536 bit patterns against m2k_ref_f16_to_f32, bit for bit
 *     except a NaN's quiet bit (bit 22), which hardware may set; also from every start
 *     offset 0..7 with every length 0..40 (the tail path);
 *   - m2k_pack_b_f16 (from fp32) and m2k_pack_b_f16_bits give the same panels;
 *   - m2k_bf16_to_float is the 16-bit shift on all 65536 patterns; m2k_bf16_from_float rounds
 *     every midpoint between bf16 neighbours to the even one, one ulp either side to the
 *     nearer one, overflows to inf past the largest finite midpoint, keeps NaN a NaN;
 *   - k->bf16_to_f32 on all 65536 patterns against m2k_ref_bf16_to_f32, bit for bit (NaN
 *     included: a shift has no quiet bit to set), and the same tails;
 *   - m2k_pack_b_bf16 and m2k_pack_b_bf16_bits give the same panels;
 *   - m2k_sgemm_f16b / m2k_sgemm_bf16b against m2k_sgemm on the same weights rounded to
 *     fp16 / bf16, both B layouts,
 *     odd shapes (M, N, K not multiples of 8, 12 or the 384-wide K block), bias, each
 *     activation, accumulate, C rows wider than N, a pool of 2 and none: the widened panels
 *     hold the same fp32 values in the same places, so the results must be equal bit for
 *     bit (tolerance 0), padding included.
 * Prints one line per check and closes with "N passed, M failed"; exits 1 on any failure. */
#include "kernels.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEON_TEST_SEED 0x2545F4914F6CDD1Dull
#include "harness.h"

static void *must(void *p) {
    if (!p) { perror("malloc"); exit(2); }
    return p;
}

static uint32_t bits_of(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* ---- the scalar conversions ----------------------------------------------------------- */

static void check_reference(void) {
    static const struct { uint16_t h; uint32_t f; } fixed[] = {
        {0x0000, 0x00000000u}, {0x8000, 0x80000000u}, {0x0001, 0x33800000u}, /* 2^-24 */
        {0x03ff, 0x387fc000u}, {0x0400, 0x38800000u}, {0x3c00, 0x3f800000u},
        {0x7bff, 0x477fe000u}, {0x7c00, 0x7f800000u}, {0xfc00, 0xff800000u},
        {0x7e00, 0x7fc00000u}, {0x7d00, 0x7fe00000u}, /* signalling NaN comes back quiet */
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (bits_of(m2k_f16_to_float(fixed[i].h)) != fixed[i].f) {
            if (!bad) printf("     0x%04x -> 0x%08x, want 0x%08x\n", fixed[i].h,
                             bits_of(m2k_f16_to_float(fixed[i].h)), fixed[i].f);
            bad++;
        }
    report(!bad, "m2k_f16_to_float: %zu fixed values", sizeof fixed / sizeof *fixed);

    bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        uint16_t back = m2k_f16_from_float(m2k_f16_to_float((uint16_t)h));
        int nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
        if (nan ? (back & 0x7fffu) != ((h | 0x200u) & 0x7fffu) || (back ^ h) & 0x8000u
                : back != h)
            bad++;
    }
    report(!bad, "m2k_f16_from_float inverts m2k_f16_to_float on all 65536 patterns (NaN "
                 "comes back quiet): %d differ", bad);

    bad = 0;
    for (uint16_t h = 0; h < 0x7bff; h++) {
        float lo = m2k_f16_to_float(h), hi = m2k_f16_to_float((uint16_t)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2); /* exact in fp32 */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
        for (int s = 0; s < 2; s++) {
            float sign = s ? -1.0f : 1.0f;
            uint16_t sb = s ? 0x8000 : 0;
            if (m2k_f16_from_float(sign * mid) != (even | sb) ||
                m2k_f16_from_float(sign * nextafterf(mid, 0)) != (h | sb) ||
                m2k_f16_from_float(sign * nextafterf(mid, INFINITY)) != ((h + 1) | sb))
                bad++;
        }
    }
    /* Past the largest finite fp16: 65520 is the midpoint to the next power, which is inf. */
    if (m2k_f16_from_float(65519.996f) != 0x7bff || m2k_f16_from_float(65520.0f) != 0x7c00 ||
        m2k_f16_from_float(1e30f) != 0x7c00 || m2k_f16_from_float(-INFINITY) != 0xfc00 ||
        m2k_f16_from_float(0x1p-25f) != 0 || m2k_f16_from_float(0x1p-149f) != 0 ||
        (m2k_f16_from_float(NAN) & 0x7e00) != 0x7e00)
        bad++;
    report(!bad, "m2k_f16_from_float: ties to even at every midpoint, one ulp either side, "
                 "overflow, underflow, NaN: %d wrong", bad);
}

static void check_bf16_reference(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++)
        if (bits_of(m2k_bf16_to_float((uint16_t)h)) != h << 16) bad++;
    report(!bad, "m2k_bf16_to_float: the top half of a float on all 65536 patterns: %d differ",
           bad);

    bad = 0;
    for (uint32_t h = 0; h < 0x7f7f; h++) {
        uint32_t mid_bits = h << 16 | 0x8000u; /* exact: 9 significant bits */
        float mid;
        memcpy(&mid, &mid_bits, sizeof mid);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        for (int s = 0; s < 2; s++) {
            float sign = s ? -1.0f : 1.0f;
            uint16_t sb = s ? 0x8000 : 0;
            if (m2k_bf16_from_float(sign * mid) != (even | sb) ||
                m2k_bf16_from_float(sign * nextafterf(mid, 0)) != (h | sb) ||
                m2k_bf16_from_float(sign * nextafterf(mid, INFINITY)) != ((h + 1) | sb))
                bad++;
        }
    }
    /* The largest finite bf16 (0x7f7f) is odd: its midpoint to 2^128 rounds to inf. */
    const uint32_t below = 0x7f7f7fffu, at = 0x7f7f8000u, snan = 0x7f800001u;
    float fbelow, fat, fsnan;
    memcpy(&fbelow, &below, 4);
    memcpy(&fat, &at, 4);
    memcpy(&fsnan, &snan, 4);
    if (m2k_bf16_from_float(fbelow) != 0x7f7f || m2k_bf16_from_float(fat) != 0x7f80 ||
        m2k_bf16_from_float(-INFINITY) != 0xff80 || m2k_bf16_from_float(0x1p-149f) != 0 ||
        (m2k_bf16_from_float(NAN) & 0x7fc0) != 0x7fc0 ||
        (m2k_bf16_from_float(fsnan) & 0x7fc0) != 0x7fc0)
        bad++;
    report(!bad, "m2k_bf16_from_float: ties to even at every midpoint, one ulp either side, "
                 "overflow, NaN (a signalling one too): %d wrong", bad);
}

/* ---- a 16-bit weight format: the table's conversion and its GEMM ------------------------- */

typedef void (*widen_fn)(const uint16_t *src, float *dst, size_t n);

typedef struct {
    const char *name; /* "f16", "bf16" as in the C names */
    widen_fn (*widen)(const m2k_kernels *k);
    widen_fn reference;
    uint16_t (*narrow)(float v);
    float (*to_float)(uint16_t h);
    void (*pack)(int nr, long n, long k, const float *b, long ldb, m2k_b_layout layout,
                 uint16_t *out);
    void (*pack_bits)(int nr, long n, long k, const uint16_t *b, long ldb,
                      m2k_b_layout layout, uint16_t *out);
    void (*gemm)(const m2k_kernels *k, m2k_pool *pool, long m, long n, long kdim,
                 const float *a, long lda, const uint16_t *bp, float *c, long ldc,
                 const float *bias, m2k_activation act, int accumulate);
    int nan_quiet_bit_may_differ; /* fp16: hardware may set it on a signalling NaN */
} half_format;

static widen_fn f16_widen(const m2k_kernels *k) { return k->f16_to_f32; }
static widen_fn bf16_widen(const m2k_kernels *k) { return k->bf16_to_f32; }

static const half_format formats[] = {
    {"f16", f16_widen, m2k_ref_f16_to_f32, m2k_f16_from_float, m2k_f16_to_float,
     m2k_pack_b_f16, m2k_pack_b_f16_bits, m2k_sgemm_f16b, 1},
    {"bf16", bf16_widen, m2k_ref_bf16_to_f32, m2k_bf16_from_float, m2k_bf16_to_float,
     m2k_pack_b_bf16, m2k_pack_b_bf16_bits, m2k_sgemm_bf16b, 0},
};

/* Equal bit for bit, or (when the format allows) both NaN differing only in the quiet bit. */
static int same_conversion(const half_format *f, float got, float want) {
    uint32_t g = bits_of(got), w = bits_of(want);
    if (g == w) return 1;
    return f->nan_quiet_bit_may_differ && isnan(got) && isnan(want) &&
           ((g ^ w) & ~0x00400000u) == 0;
}

static void check_conversion(const half_format *f, const m2k_kernels *k) {
    enum { ALL = 65536 };
    uint16_t *src = must(malloc(ALL * sizeof *src));
    float *got = must(malloc(ALL * sizeof *got)), *want = must(malloc(ALL * sizeof *want));
    for (uint32_t h = 0; h < ALL; h++) src[h] = (uint16_t)h;
    f->widen(k)(src, got, ALL);
    f->reference(src, want, ALL);
    int bad = 0;
    long first = -1;
    for (long i = 0; i < ALL; i++)
        if (!same_conversion(f, got[i], want[i])) {
            if (first < 0) first = i;
            bad++;
        }
    report(!bad, "%s %s_to_f32: all 65536 patterns match the reference%s", k->name, f->name,
           f->nan_quiet_bit_may_differ ? " (NaN: up to the quiet bit)" : ", bit for bit");
    if (bad)
        printf("     %d differ; first 0x%04lx: got 0x%08x want 0x%08x\n", bad, first,
               bits_of(got[first]), bits_of(want[first]));

    /* Tails and misaligned starts: the guard after each run must stay untouched. */
    bad = 0;
    for (int offset = 0; offset < 8; offset++)
        for (size_t n = 0; n <= 40; n++) {
            const uint16_t *s = src + 0x3b00 + offset * 97;
            float out[48];
            for (int i = 0; i < 48; i++) out[i] = -1234.5f;
            f->widen(k)(s, out, n);
            for (size_t i = 0; i < 48; i++) {
                int ok = i < n ? same_conversion(f, out[i], f->to_float(s[i]))
                               : out[i] == -1234.5f;
                if (!ok) bad++;
            }
        }
    report(!bad, "%s %s_to_f32: offsets 0..7 × lengths 0..40, nothing written past n",
           k->name, f->name);
    free(src);
    free(got);
    free(want);
}

/* ---- the 16-bit-weight GEMM ------------------------------------------------------------ */

typedef struct { long m, n, k; } shape;

static void check_gemm(const half_format *f, const m2k_kernels *k, m2k_pool *pool, shape s,
                       m2k_b_layout layout, int bias_on, m2k_activation act, int accumulate) {
    const long ldb = layout == M2K_B_NK ? s.k + 3 : s.n + 5, ldc = s.n + 2, lda = s.k + 1;
    const long brows = layout == M2K_B_NK ? s.n : s.k;
    float *b = must(malloc((size_t)(brows * ldb + 1) * sizeof *b));
    float *rounded = must(malloc((size_t)(brows * ldb + 1) * sizeof *rounded));
    uint16_t *bits = must(malloc((size_t)(brows * ldb + 1) * sizeof *bits));
    for (long i = 0; i < brows * ldb; i++) {
        b[i] = uniform(-1, 1);
        bits[i] = f->narrow(b[i]);
        rounded[i] = f->to_float(bits[i]);
    }
    float *a = must(malloc((size_t)(s.m * lda + 1) * sizeof *a));
    for (long i = 0; i < s.m * lda; i++) a[i] = uniform(-1, 1);
    float *bias = must(malloc((size_t)(s.n + 1) * sizeof *bias));
    for (long j = 0; j < s.n; j++) bias[j] = uniform(-1, 1);

    size_t count = m2k_packed_b_floats(k->nr, s.n, s.k);
    float *p32 = must(m2k_alloc((count + 1) * sizeof *p32));
    uint16_t *p16 = must(m2k_alloc((count + 1) * sizeof *p16));
    uint16_t *p16bits = must(m2k_alloc((count + 1) * sizeof *p16bits));
    m2k_pack_b(k->nr, s.n, s.k, rounded, ldb, layout, p32);
    f->pack(k->nr, s.n, s.k, b, ldb, layout, p16);
    f->pack_bits(k->nr, s.n, s.k, bits, ldb, layout, p16bits);
    int same_panels = memcmp(p16, p16bits, count * sizeof *p16) == 0;

    float *want = must(malloc((size_t)(s.m * ldc + 1) * sizeof *want));
    float *got = must(malloc((size_t)(s.m * ldc + 1) * sizeof *got));
    for (long i = 0; i < s.m * ldc; i++) want[i] = got[i] = uniform(-2, 2);
    const float *bp = bias_on ? bias : NULL;
    m2k_sgemm(k, pool, s.m, s.n, s.k, a, lda, p32, want, ldc, bp, act, accumulate);
    f->gemm(k, pool, s.m, s.n, s.k, a, lda, p16, got, ldc, bp, act, accumulate);
    long differ = 0;
    for (long i = 0; i < s.m * ldc; i++)
        if (bits_of(got[i]) != bits_of(want[i])) differ++;
    report(same_panels && !differ,
           "%s sgemm_%sb %ldx%ldx%ld %s%s act=%d%s%s: %ld of %ld C values differ from "
           "m2k_sgemm on %s-rounded B%s",
           k->name, f->name, s.m, s.n, s.k, layout == M2K_B_NK ? "NK" : "KN", bias_on ? " bias" : "",
           (int)act, accumulate ? " accumulate" : "", pool ? " pool 2" : "", differ,
           s.m * ldc, f->name, same_panels ? "" : "; pack_b and pack_b_bits panels differ");
    free(b); free(rounded); free(bits); free(a); free(bias); free(want); free(got);
    m2k_free(p32); m2k_free(p16); m2k_free(p16bits);
}

int main(void) {
    const m2k_kernels *k = m2k_active();
    const char *why = m2k_dispatch_error();
    report(k && strcmp(k->name, "neon") == 0 && k->f16_to_f32 && k->bf16_to_f32,
           "dispatch: active variant is \"%s\" with f16_to_f32 and bf16_to_f32 (want "
           "\"neon\")%s%s", k ? k->name : "(none)", why ? ": " : "", why ? why : "");
    if (!k || !k->f16_to_f32 || !k->bf16_to_f32) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    check_reference();
    check_bf16_reference();
    for (size_t f = 0; f < sizeof formats / sizeof *formats; f++) {
        check_conversion(&formats[f], k);
        check_conversion(&formats[f], m2k_variant_kernels(M2K_VARIANT_SCALAR));
    }

    m2k_pool *pool = m2k_pool_create(2);
    if (!pool) { perror("m2k_pool_create"); return 2; }
    /* One element; odd everything; one exact 8 × 12 tile; K = 0; K over two 384-wide
     * blocks with a ragged third; M over two 192-row blocks; several panels and chunks. */
    static const shape shapes[] = {
        {1, 1, 1}, {13, 37, 29}, {8, 12, 16}, {5, 3, 0}, {7, 40, 1001}, {200, 45, 33},
        {25, 300, 70},
    };
    for (size_t fi = 0; fi < sizeof formats / sizeof *formats; fi++) {
        const half_format *f = &formats[fi];
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
            for (int layout = 0; layout < 2; layout++) {
                check_gemm(f, k, pool, shapes[i], (m2k_b_layout)layout, 0, M2K_ACT_NONE, 0);
                check_gemm(f, k, NULL, shapes[i], (m2k_b_layout)layout, 1, M2K_ACT_QUICKGELU, 0);
            }
            check_gemm(f, k, pool, shapes[i], M2K_B_NK, 1, M2K_ACT_GELU, 0);
            check_gemm(f, k, pool, shapes[i], M2K_B_NK, 1, M2K_ACT_NONE, 1);
        }
    }
    m2k_pool_destroy(pool);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
