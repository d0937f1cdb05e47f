/// Bit-exact conversions between `Float` and the 16-bit float formats of checkpoints, written out
/// so that they behave the same on every platform (no reliance on a `Float16` type).
public enum FloatConversion {
    /// IEEE 754 binary16 bits to `Float`. Exact for every input: subnormals, ±0, ±inf, and NaN
    /// (the payload moves to the top of the float's mantissa).
    @inline(__always)
    public static func float(fromFloat16Bits bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x3FF)
        switch exponent {
        case 0:
            // Zero or subnormal: mantissa × 2^-24, exact in a Float.
            let magnitude = Float(mantissa) * 0x1p-24
            return sign == 0 ? magnitude : -magnitude
        case 0x1F:
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        default:
            // Rebias the exponent from 15 to 127.
            return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
        }
    }

    /// `Float` to IEEE 754 binary16 bits, rounding to nearest, ties to even. Magnitudes from
    /// 65520 up become inf; below 2^-25 they become ±0; NaN stays NaN (quiet).
    @inline(__always)
    public static func float16Bits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
        let magnitude = bits & 0x7FFF_FFFF

        if magnitude >= 0x7F80_0000 {
            if magnitude == 0x7F80_0000 { return sign | 0x7C00 }
            // NaN: keep the top payload bits and set the quiet bit so it cannot become inf.
            return sign | 0x7E00 | UInt16(truncatingIfNeeded: (magnitude >> 13) & 0x3FF)
        }
        // 65520 = 65504 + half an ulp: from there on, round to nearest gives inf.
        if magnitude >= 0x477F_F000 { return sign | 0x7C00 }

        if magnitude < 0x3880_0000 {
            // Below 2^-14: a binary16 subnormal in units of 2^-24, or zero. 2^-25 itself is a
            // tie between 0 and 2^-24 and rounds to the even 0.
            if magnitude < 0x3300_0000 { return sign }
            let exponent = magnitude >> 23  // 102...112
            let significand = (magnitude & 0x7F_FFFF) | 0x80_0000
            let shift = 126 - exponent  // 14...24
            return sign | UInt16(truncatingIfNeeded: roundShiftRight(significand, by: shift))
        }

        // Normal: rebias 127 → 15 and drop 13 mantissa bits. A carry out of the mantissa moves
        // into the exponent, which is the correctly rounded result (65520 was handled above).
        let rebased = magnitude - (112 << 23)
        return sign | UInt16(truncatingIfNeeded: roundShiftRight(rebased, by: 13))
    }

    /// bfloat16 bits to `Float`: the top half of a float, so the conversion is a shift.
    @inline(__always)
    public static func float(fromBFloat16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// `Float` to bfloat16 bits, rounding to nearest, ties to even; NaN stays NaN (quiet).
    @inline(__always)
    public static func bfloat16Bits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        return UInt16(truncatingIfNeeded: roundShiftRight(bits, by: 16))
    }

    /// `value >> shift`, rounded to nearest with ties to even. Callers keep the result in range.
    @inline(__always)
    static func roundShiftRight(_ value: UInt32, by shift: UInt32) -> UInt32 {
        let kept = value >> shift
        let remainder = value & ((1 << shift) - 1)
        let half: UInt32 = 1 << (shift - 1)
        if remainder > half || (remainder == half && kept & 1 == 1) { return kept + 1 }
        return kept
    }
}
