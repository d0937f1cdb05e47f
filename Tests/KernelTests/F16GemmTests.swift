import CKernels
import Foundation
import Testing

/// fp16 weights: m2k_f16_to_float / m2k_f16_from_float against Swift's Float16, every
/// variant's f16_to_f32 against m2k_ref_f16_to_f32 over all 65536 bit patterns, and
/// m2k_sgemm_f16b against m2k_sgemm on the same weights rounded to fp16 (the last two
/// through HalfWeightFormat, which the bf16-weight tests share).
// No closure appears inside an #expect here (the Swift 6.3.1 bug described in RuntimeTests).
@Suite("fp16 conversions and the fp16-weight GEMM")
struct F16GemmTests {
    /// Equal bit for bit, or both NaN differing only in the quiet bit (bit 22): F16C and NEON
    /// may set it on a signalling NaN (the reference does too; the payload must survive).
    @Sendable static func sameConversion(_ got: Float, _ want: Float) -> Bool {
        got.bitPattern == want.bitPattern
            || (got.isNaN && want.isNaN && (got.bitPattern ^ want.bitPattern) & ~0x0040_0000 == 0)
    }

    @Test("m2k_f16_to_float widens exactly: Swift's Float16 on all 65536 patterns")
    func referenceWidening() {
        var wrong: [String] = []
        for h in 0...UInt16.max {
            let want = Float(Float16(bitPattern: h)), got = m2k_f16_to_float(h)
            if !Self.sameConversion(got, want) && wrong.count < 3 {
                wrong.append(String(format: "0x%04x: got 0x%08x want 0x%08x", h, got.bitPattern,
                                    want.bitPattern))
            }
        }
        #expect(wrong.isEmpty, "\(wrong)")
        // A signalling NaN comes back quiet with its payload.
        #expect(m2k_f16_to_float(0x7d01).bitPattern == 0x7fe0_2000)
    }

    @Test("m2k_f16_from_float rounds as Swift's Float16 does, ties to even")
    func referenceRounding() {
        var inputs: [Float] = [0, -0, 65504, 65519.996, 65520, 1e30, -.infinity, .infinity,
                               0x1p-24, 0x1p-25, 0x1.8p-25, 0x1p-149, .leastNormalMagnitude]
        // Every midpoint between positive fp16 neighbours and the floats one ulp either side.
        for h in UInt16(0)..<0x7bff {
            let mid = Float((Double(Float16(bitPattern: h)) + Double(Float16(bitPattern: h + 1))) / 2)
            inputs += [mid, mid.nextDown, mid.nextUp, -mid]
        }
        inputs += randomFloats(100_000, in: -70_000...70_000, seed: 77)
        inputs += randomFloats(100_000, in: -1e-4...1e-4, seed: 78)
        var wrong: [String] = []
        for v in inputs {
            let want = Float16(v).bitPattern, got = m2k_f16_from_float(v)
            if got != want && wrong.count < 3 {
                wrong.append("\(v): got 0x\(String(got, radix: 16)) want 0x\(String(want, radix: 16))")
            }
        }
        #expect(wrong.isEmpty, "\(wrong)")
        #expect(Float16(bitPattern: m2k_f16_from_float(.nan)).isNaN)
    }

    static let format = HalfWeightFormat(
        name: "f16", widen: { $0.pointee.f16_to_f32 }, referenceWiden: m2k_ref_f16_to_f32,
        narrow: m2k_f16_from_float, toFloat: m2k_f16_to_float, pack: m2k_pack_b_f16,
        packBits: m2k_pack_b_f16_bits, gemm: m2k_sgemm_f16b, sameConversion: sameConversion)

    @Test("every variant's f16_to_f32 matches the reference on all 65536 patterns and tails")
    func variantConversions() {
        Self.format.checkVariantWidening()
    }

    @Test("m2k_sgemm_f16b equals m2k_sgemm on fp16-rounded B, every variant and epilogue",
          arguments: HalfWeightFormat.shapes.indices)
    func gemm(_ index: Int) throws {
        try Self.format.checkGemm(shape: index, seed: 40_000)
    }
}
