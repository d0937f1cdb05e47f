/* IEEE binary16 ↔ binary32 on integers: the oracle for the F16C and NEON conversions and
 * what packs fp32 weights to fp16. */
#include "kernels.h"
#include <string.h>

float m2k_f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1f) {
        /* inf, or NaN made quiet (bit 22) with its payload moved to the top. */
        bits = sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x00400000u : 0);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    } else {
        /* zero or subnormal: mantissa · 2^-24, exact in fp32 (a normal number there). */
        float v = (float)mantissa * 0x1p-24f;
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

uint16_t m2k_f16_from_float(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu); /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* ≥ 65520 (halfway past 65504): inf */
    if (a >= 0x38800000u) {                      /* ≥ 2^-14: a normal fp16 */
        uint32_t r = a - ((127u - 15u) << 23);
        return sign | (uint16_t)((r + 0xfffu + ((r >> 13) & 1u)) >> 13);
    }
    /* Subnormal (or rounds up to the smallest normal): m · 2^(e−150) in units of 2^-24. */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* ≥ 14 */
    if (shift > 24) return sign;  /* below 2^-25: rounds to zero */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

void m2k_ref_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = m2k_f16_to_float(src[i]);
}
