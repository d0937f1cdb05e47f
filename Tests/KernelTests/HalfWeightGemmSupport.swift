import CKernels
import Foundation
import Testing

/// A 16-bit weight format that the GEMM driver widens a slice at a time: fp16
/// (m2k_sgemm_f16b) or bf16 (m2k_sgemm_bf16b). F16GemmTests and BF16WeightGemmTests run the
/// same checks through it: every variant's widening against the reference, and the GEMM
/// against m2k_sgemm on the rounded weights.
struct HalfWeightFormat: Sendable {
    typealias Widen = @convention(c) (UnsafePointer<UInt16>?, UnsafeMutablePointer<Float>?, Int) -> Void
    typealias Pack = @convention(c) (Int32, Int, Int, UnsafePointer<Float>?, Int, m2k_b_layout,
                                     UnsafeMutablePointer<UInt16>?) -> Void
    typealias PackBits = @convention(c) (Int32, Int, Int, UnsafePointer<UInt16>?, Int, m2k_b_layout,
                                         UnsafeMutablePointer<UInt16>?) -> Void
    typealias Gemm = @convention(c) (UnsafePointer<m2k_kernels>?, OpaquePointer?, Int, Int, Int,
                                     UnsafePointer<Float>?, Int, UnsafePointer<UInt16>?,
                                     UnsafeMutablePointer<Float>?, Int, UnsafePointer<Float>?,
                                     m2k_activation, Int32) -> Void

    /// "f16" or "bf16", as in the C names.
    let name: String
    /// The table's widening function (`f16_to_f32` or `bf16_to_f32`).
    let widen: @Sendable (UnsafePointer<m2k_kernels>) -> Widen?
    let referenceWiden: Widen
    let narrow: @convention(c) (Float) -> UInt16
    let toFloat: @convention(c) (UInt16) -> Float
    let pack: Pack
    let packBits: PackBits
    let gemm: Gemm
    /// Equal bit for bit, or (fp16) both NaN differing only in the quiet bit.
    let sameConversion: @Sendable (Float, Float) -> Bool

    /// (M, N, K): one element; odd sizes; exactly one AVX2 (6×16) and AVX-512 (12×32) tile;
    /// K = 0; K over two and three of gemm.c's 384-wide K blocks (ragged last); M over two
    /// 192-row blocks; several N chunks; a ViT-like block with odd K.
    static let shapes = [
        (1, 1, 1), (13, 37, 29), (6, 16, 16), (12, 32, 32), (5, 3, 0), (9, 20, 777),
        (200, 40, 33), (25, 300, 70), (197, 64, 769),
    ]

    /// Every variant's widening against the reference on all 65536 patterns, and from every
    /// start offset 0..15 with every length 0..40 (the tail path, nothing written past n).
    func checkVariantWidening() {
        let all = (0...UInt16.max).map { $0 }
        var want = [Float](repeating: 0, count: all.count)
        referenceWiden(all, &want, all.count)
        for k in availableVariants() {
            guard let widen = widen(k) else {
                Issue.record("\(name)_to_f32 [\(k.name)] is NULL")
                continue
            }
            var got = [Float](repeating: 0, count: all.count)
            widen(all, &got, all.count)
            let bad = (0..<all.count).filter { !sameConversion(got[$0], want[$0]) }
            #expect(bad.isEmpty, "\(name)_to_f32 [\(k.name)]: \(bad.count) patterns differ, first \(bad.first ?? 0)")
            var tailErrors = 0
            for offset in 0..<16 {
                for n in 0...40 {
                    let start = 0x3b00 + offset * 97
                    var out = [Float](repeating: -1234.5, count: 48)
                    all.withUnsafeBufferPointer { widen($0.baseAddress! + start, &out, n) }
                    for i in 0..<48 {
                        let ok = i < n ? sameConversion(out[i], want[start + i]) : out[i] == -1234.5
                        if !ok { tailErrors += 1 }
                    }
                }
            }
            #expect(tailErrors == 0, "\(name)_to_f32 [\(k.name)] tails: \(tailErrors) wrong")
        }
    }

    /// The widened panels hold the same fp32 values in the same places as m2k_pack_b's of the
    /// rounded weights and go through the same micro-kernels in the same order, so the
    /// results must be equal bit for bit (tolerance 0), padding included; packing from fp32
    /// and from bits must give the same panels.
    func checkGemm(shape index: Int, seed base: UInt64) throws {
        let (m, n, kdim) = Self.shapes[index]
        let seed = base + UInt64(index) * 10
        let a = StridedMatrix(rows: m, cols: kdim, ld: kdim + 2, in: -1...1, seed: seed)
        let bias = randomFloats(n, in: -1...1, seed: seed + 1)
        let c0 = StridedMatrix(rows: m, cols: n, ld: n + 3, in: -1...1, seed: seed + 2)
        let bNK = StridedMatrix(rows: n, cols: kdim, ld: kdim + 1, in: -1...1, seed: seed + 3)
        let bKN = StridedMatrix(rows: kdim, cols: n, ld: n + 1) { bNK[$1, $0] }
        try withPool(threads: 2) { pool in
            for (b, layout, layoutName) in [(bNK, M2K_B_NK, "B (N,K)"), (bKN, M2K_B_KN, "B (K,N)")] {
                let bits = b.storage.map { narrow($0) }
                var rounded = b
                rounded.storage = bits.map { toFloat($0) }
                for k in availableVariants() {
                    let count = max(m2k_packed_b_floats(k.pointee.nr, n, kdim), 1)
                    let p32 = GemmAttentionTests.packB(rounded, layout: layout, n: n, kdim: kdim, for: k)
                    let p16 = m2k_alloc(count * 2)!.bindMemory(to: UInt16.self, capacity: count)
                    let p16bits = m2k_alloc(count * 2)!.bindMemory(to: UInt16.self, capacity: count)
                    defer { m2k_free(p32); m2k_free(p16); m2k_free(p16bits) }
                    pack(k.pointee.nr, n, kdim, b.storage, b.ld, layout, p16)
                    packBits(k.pointee.nr, n, kdim, bits, b.ld, layout, p16bits)
                    let samePanels = memcmp(p16, p16bits, m2k_packed_b_floats(k.pointee.nr, n, kdim) * 2) == 0
                    #expect(samePanels, "pack_b_\(name) and pack_b_\(name)_bits [\(k.name)] \(layoutName) differ")
                    for (withBias, act, accumulate, epilogue) in gemmEpilogues {
                        for (p, poolName) in [(pool, "2 threads"), (nil, "no pool")] {
                            var want = c0, got = c0
                            withOptionalPointer(withBias ? bias : nil) { biasPointer in
                                m2k_sgemm(k, p, m, n, kdim, a.storage, a.ld, p32, &want.storage,
                                          want.ld, biasPointer, act, accumulate ? 1 : 0)
                                gemm(k, p, m, n, kdim, a.storage, a.ld, p16, &got.storage,
                                     got.ld, biasPointer, act, accumulate ? 1 : 0)
                            }
                            let differ = zip(got.storage, want.storage).filter { $0.bitPattern != $1.bitPattern }.count
                            #expect(differ == 0, "sgemm_\(name)b [\(k.name)] \(m)×\(n)×\(kdim) \(layoutName) \(epilogue) \(poolName): \(differ) values differ from m2k_sgemm")
                        }
                    }
                }
            }
        }
    }
}
