import CKernels
import Foundation
import Testing

/// fp16 weights: m2k_f16_to_float / m2k_f16_from_float against Swift's Float16, every
/// variant's f16_to_f32 against m2k_ref_f16_to_f32 over all 65536 bit patterns, and
/// m2k_sgemm_f16b against m2k_sgemm on the same weights rounded to fp16.
// No closure appears inside an #expect here (the Swift 6.3.1 bug described in RuntimeTests).
@Suite("fp16 conversions and the fp16-weight GEMM")
struct F16GemmTests {
    /// Equal bit for bit, or both NaN differing only in the quiet bit (bit 22): F16C and NEON
    /// may set it on a signalling NaN (the reference does too; the payload must survive).
    static func sameConversion(_ got: Float, _ want: Float) -> Bool {
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

    @Test("every variant's f16_to_f32 matches the reference on all 65536 patterns and tails")
    func variantConversions() {
        let all = (0...UInt16.max).map { $0 }
        var want = [Float](repeating: 0, count: all.count)
        m2k_ref_f16_to_f32(all, &want, all.count)
        for k in availableVariants() {
            var got = [Float](repeating: 0, count: all.count)
            k.pointee.f16_to_f32(all, &got, all.count)
            let bad = (0..<all.count).filter { !Self.sameConversion(got[$0], want[$0]) }
            #expect(bad.isEmpty, "f16_to_f32 [\(k.name)]: \(bad.count) patterns differ, first \(bad.first ?? 0)")
            // Every start offset 0..15 and length 0..40: the tail path, nothing written past n.
            var tailErrors = 0
            for offset in 0..<16 {
                for n in 0...40 {
                    let start = 0x3b00 + offset * 97
                    var out = [Float](repeating: -1234.5, count: 48)
                    all.withUnsafeBufferPointer { k.pointee.f16_to_f32($0.baseAddress! + start, &out, n) }
                    for i in 0..<48 {
                        let ok = i < n ? Self.sameConversion(out[i], want[start + i]) : out[i] == -1234.5
                        if !ok { tailErrors += 1 }
                    }
                }
            }
            #expect(tailErrors == 0, "f16_to_f32 [\(k.name)] tails: \(tailErrors) wrong")
        }
    }

    /// (M, N, K): one element; odd sizes; exactly one AVX2 (6×16) and AVX-512 (12×32) tile;
    /// K = 0; K over two and three of gemm.c's 384-wide K blocks (ragged last); M over two
    /// 192-row blocks; several N chunks; a ViT-like block with odd K.
    static let shapes = [
        (1, 1, 1), (13, 37, 29), (6, 16, 16), (12, 32, 32), (5, 3, 0), (9, 20, 777),
        (200, 40, 33), (25, 300, 70), (197, 64, 769),
    ]

    /// The widened panels hold the same fp32 values in the same places as m2k_pack_b's of the
    /// fp16-rounded weights and go through the same micro-kernels in the same order, so the
    /// results must be equal bit for bit (tolerance 0), padding included.
    @Test("m2k_sgemm_f16b equals m2k_sgemm on fp16-rounded B, every variant and epilogue",
          arguments: shapes.indices)
    func gemm(_ index: Int) throws {
        let (m, n, kdim) = Self.shapes[index]
        let seed = 40_000 + UInt64(index) * 10
        let a = StridedMatrix(rows: m, cols: kdim, ld: kdim + 2, in: -1...1, seed: seed)
        let bias = randomFloats(n, in: -1...1, seed: seed + 1)
        let c0 = StridedMatrix(rows: m, cols: n, ld: n + 3, in: -1...1, seed: seed + 2)
        let bNK = StridedMatrix(rows: n, cols: kdim, ld: kdim + 1, in: -1...1, seed: seed + 3)
        let bKN = StridedMatrix(rows: kdim, cols: n, ld: n + 1) { bNK[$1, $0] }
        let epilogues = GemmAttentionTests.epilogues
        try withPool(threads: 2) { pool in
            for (b, layout, layoutName) in [(bNK, M2K_B_NK, "B (N,K)"), (bKN, M2K_B_KN, "B (K,N)")] {
                let bits = b.storage.map { m2k_f16_from_float($0) }
                var rounded = b
                rounded.storage = bits.map { m2k_f16_to_float($0) }
                for k in availableVariants() {
                    let count = m2k_packed_b_floats(k.pointee.nr, n, kdim)
                    let p32 = GemmAttentionTests.packB(rounded, layout: layout, n: n, kdim: kdim, for: k)
                    let p16 = m2k_alloc(max(count, 1) * 2)!.bindMemory(to: UInt16.self, capacity: max(count, 1))
                    let p16bits = m2k_alloc(max(count, 1) * 2)!.bindMemory(to: UInt16.self, capacity: max(count, 1))
                    defer { m2k_free(p32); m2k_free(p16); m2k_free(p16bits) }
                    m2k_pack_b_f16(k.pointee.nr, n, kdim, b.storage, b.ld, layout, p16)
                    m2k_pack_b_f16_bits(k.pointee.nr, n, kdim, bits, b.ld, layout, p16bits)
                    let samePanels = memcmp(p16, p16bits, count * 2) == 0
                    #expect(samePanels, "pack_b_f16 and pack_b_f16_bits [\(k.name)] \(layoutName) differ")
                    for (withBias, act, accumulate, epilogue) in epilogues {
                        for (p, poolName) in [(pool, "2 threads"), (nil, "no pool")] {
                            var want = c0, got = c0
                            withOptionalPointer(withBias ? bias : nil) { biasPointer in
                                m2k_sgemm(k, p, m, n, kdim, a.storage, a.ld, p32, &want.storage,
                                          want.ld, biasPointer, act, accumulate ? 1 : 0)
                                m2k_sgemm_f16b(k, p, m, n, kdim, a.storage, a.ld, p16, &got.storage,
                                               got.ld, biasPointer, act, accumulate ? 1 : 0)
                            }
                            let differ = zip(got.storage, want.storage).filter { $0.bitPattern != $1.bitPattern }.count
                            #expect(differ == 0, "sgemm_f16b [\(k.name)] \(m)×\(n)×\(kdim) \(layoutName) \(epilogue) \(poolName): \(differ) values differ from m2k_sgemm")
                        }
                    }
                }
            }
        }
    }
}
