import CKernels
import Foundation
import Testing

/// bf16 weights: m2k_bf16_to_float is the 16-bit shift on all 65536 patterns, m2k_bf16_from_float
/// rounds to nearest with ties to even (checked at every midpoint and against a search over
/// the two neighbours in Double), every variant's bf16_to_f32 equals the reference bit for bit
/// on every pattern, and m2k_sgemm_bf16b equals m2k_sgemm on the same weights rounded to bf16.
// No closure appears inside an #expect here (the Swift 6.3.1 bug described in RuntimeTests).
@Suite("bf16 conversions and the bf16-weight GEMM")
struct BF16WeightGemmTests {
    /// bf16 widening is a shift: nothing to forgive, not even a NaN's quiet bit.
    static let format = HalfWeightFormat(
        name: "bf16", widen: { $0.pointee.bf16_to_f32 }, referenceWiden: m2k_ref_bf16_to_f32,
        narrow: m2k_bf16_from_float, toFloat: m2k_bf16_to_float, pack: m2k_pack_b_bf16,
        packBits: m2k_pack_b_bf16_bits, gemm: m2k_sgemm_bf16b,
        sameConversion: { $0.bitPattern == $1.bitPattern })

    @Test("m2k_bf16_to_float is the top half of a float on all 65536 patterns")
    func referenceWidening() {
        let bad = (0...UInt16.max).filter { m2k_bf16_to_float($0).bitPattern != UInt32($0) << 16 }
        #expect(bad.isEmpty, "\(bad.count) patterns differ, first \(bad.first ?? 0)")
    }

    /// The nearest bf16 by distance in Double, ties to the even one: an oracle that shares
    /// nothing with the carry trick of m2k_bf16_from_float. Finite inputs only.
    static func nearest(_ v: Float) -> UInt16 {
        let low = UInt16(truncatingIfNeeded: v.bitPattern >> 16) // toward zero
        let lowValue = Double(m2k_bf16_to_float(low))
        // Past the largest finite bf16 the next step up is 2^128 (inf), as in IEEE rounding.
        let high = low &+ 1
        let highValue = (low & 0x7fff) == 0x7f7f ? (v < 0 ? -0x1p128 : 0x1p128)
                                                 : Double(m2k_bf16_to_float(high))
        let dLow = abs(Double(v) - lowValue), dHigh = abs(Double(v) - highValue)
        if dLow != dHigh { return dLow < dHigh ? low : high }
        return low & 1 == 0 ? low : high
    }

    @Test("m2k_bf16_from_float: ties to even at every midpoint, one ulp either side, overflow, NaN")
    func referenceRounding() {
        var wrong: [String] = []
        func check(_ v: Float, _ want: UInt16) {
            let got = m2k_bf16_from_float(v)
            if got != want && wrong.count < 3 {
                wrong.append("\(v) (0x\(String(v.bitPattern, radix: 16))): got 0x\(String(got, radix: 16)) want 0x\(String(want, radix: 16))")
            }
        }
        // Every midpoint between positive finite bf16 neighbours (exact in fp32: 9 bits),
        // subnormals included, and the floats one ulp either side; both signs.
        for h in UInt16(0)..<0x7f7f {
            let mid = Float(bitPattern: UInt32(h) << 16 | 0x8000)
            let even = h & 1 == 0 ? h : h + 1
            for sign: UInt16 in [0, 0x8000] {
                let s: Float = sign == 0 ? 1 : -1
                check(s * mid, even | sign)
                check(s * mid.nextDown, h | sign)
                check(s * mid.nextUp, (h + 1) | sign)
            }
        }
        // The largest finite bf16 is odd: its midpoint to 2^128 and beyond round to inf.
        check(Float(bitPattern: 0x7f7f_7fff), 0x7f7f)
        check(Float(bitPattern: 0x7f7f_8000), 0x7f80)
        check(.greatestFiniteMagnitude, 0x7f80)
        check(-.greatestFiniteMagnitude, 0xff80)
        check(.infinity, 0x7f80)
        check(-.infinity, 0xff80)
        check(0, 0)
        check(-0.0, 0x8000)
        check(.leastNonzeroMagnitude, 0)
        for v in randomFloats(200_000, in: -4...4, seed: 91) + randomFloats(100_000, in: -1e-38...1e-38, seed: 92) {
            check(v, Self.nearest(v))
        }
        #expect(wrong.isEmpty, "\(wrong)")
        // NaN stays NaN (quiet), sign kept; truncating a signalling NaN would give inf.
        for nan: UInt32 in [0x7fc0_0000, 0x7f80_0001, 0xff80_0001, 0x7fff_ffff] {
            let b = m2k_bf16_from_float(Float(bitPattern: nan))
            #expect(b & 0x7f80 == 0x7f80 && b & 0x0040 != 0 && (b ^ UInt16(nan >> 16)) & 0x8000 == 0,
                    "0x\(String(nan, radix: 16)) -> 0x\(String(b, radix: 16))")
        }
    }

    @Test("every variant's bf16_to_f32 matches the reference on all 65536 patterns and tails")
    func variantConversions() {
        Self.format.checkVariantWidening()
    }

    @Test("m2k_sgemm_bf16b equals m2k_sgemm on bf16-rounded B, every variant and epilogue",
          arguments: HalfWeightFormat.shapes.indices)
    func gemm(_ index: Int) throws {
        try Self.format.checkGemm(shape: index, seed: 50_000)
    }
}
