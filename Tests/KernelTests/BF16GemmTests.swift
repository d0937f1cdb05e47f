import CKernels
import Foundation
import Testing
import Ops

/// One way a table runs the bf16 GEMM: its native kernel (AVX-512 BF16) when the CPU runs it,
/// or the portable path (bf16 widened to fp32, the table's sgemm kernel). A table with a
/// native kernel is also tested through a copy without it, so the portable path of the
/// AVX-512 table (an AVX-512 CPU without BF16) runs on a CPU that has BF16.
struct BF16Path: CustomStringConvertible {
    let table: UnsafePointer<m2k_kernels>
    let native: Bool

    var description: String { "\(table.name)/\(native ? "native" : "portable")" }

    /// `body` with the table, or with a copy of it that has no native bf16 kernel.
    func withTable<R>(_ body: (UnsafePointer<m2k_kernels>) throws -> R) rethrows -> R {
        if native || table.pointee.bf16_kernel == nil { return try body(table) }
        var portable = table.pointee
        portable.bf16_kernel = nil
        return try withUnsafePointer(to: &portable) { try body($0) }
    }
}

/// Every (table, path) pair this CPU runs.
func availableBF16Paths() -> [BF16Path] {
    availableVariants().flatMap { table -> [BF16Path] in
        let portable = BF16Path(table: table, native: false)
        return m2k_bf16_native(table) != 0 ? [BF16Path(table: table, native: true), portable]
            : [portable]
    }
}

/// W (N, K) packed by m2k_bf16_pack for `table`, in m2k_alloc memory.
final class PackedBF16Weights {
    let blob: UnsafeMutableRawPointer
    init(_ w: [Float], n: Int, kdim: Int, for table: UnsafePointer<m2k_kernels>) {
        blob = m2k_alloc(m2k_bf16_packed_bytes(table, n, kdim))!
        m2k_bf16_pack(table, n, kdim, w, blob)
    }
    deinit { m2k_free(blob) }
}

/// m2k_bf16_from_float against a Swift rounding of the bit pattern; m2k_bf16_native per table;
/// m2k_bf16_gemm on every path this CPU runs (AVX-512 BF16 and each table's portable path)
/// against m2k_ref_bf16_gemm; bf16 against the fp32 reference GEMM on normal data.
// No closure appears inside an #expect here (the Swift 6.3.1 bug described in RuntimeTests).
@Suite("bf16 GEMM matches the reference")
struct BF16GemmTests {
    /// Products of bf16 values are exact in fp32: only the order of the fp32 sums (and the
    /// vector activations) differ from the reference's double sum, within 1e-5 of
    /// max(1, the row's largest |C|).
    static let tolerance = Tolerance.row(1e-5)

    /// (M, N, K): one element; odd sizes, K odd and N not a multiple of any panel; exactly one
    /// AVX-512 (12×32) and AVX2 (6×16) tile; K = 0 (C = act(bias)); K = 768 and 3072 (over
    /// the driver's 512-wide K blocks); M over two of the 192-row blocks; several panels and
    /// N chunks; a ViT-like block with odd K.
    static let shapes = [
        (1, 1, 1), (13, 37, 29), (12, 32, 32), (6, 16, 16), (5, 3, 0), (3, 50, 768),
        (7, 40, 3072), (200, 45, 33), (25, 300, 70), (197, 64, 769),
    ]


    /// bf16 bits of `v`: the top half of its bit pattern, rounded on the bottom half to
    /// nearest, ties to even; NaN stays NaN.
    static func swiftBF16(_ v: Float) -> UInt16 {
        if v.isNaN { return UInt16(v.bitPattern >> 16) | 0x40 }
        let bits = v.bitPattern
        let (upper, lower) = (bits >> 16, bits & 0xffff)
        let up = lower > 0x8000 || (lower == 0x8000 && upper & 1 == 1)
        return UInt16(truncatingIfNeeded: up ? upper + 1 : upper)
    }

    @Test("m2k_bf16_from_float rounds to nearest even; m2k_bf16_to_float widens exactly")
    func rounding() {
        let tie = Float(bitPattern: 0x3f80_8000)  // 1 + 2⁻⁸: halfway, kept half even → down
        let oddTie = Float(bitPattern: 0x3f81_8000)  // kept half odd → up
        var values: [Float] = [
            0, -0, 1, -1, tie, oddTie, tie.nextUp, tie.nextDown, oddTie.nextDown, .infinity,
            -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
            .leastNormalMagnitude, .leastNonzeroMagnitude, 3.14159265, -2.71828, 1e-30, 65504,
        ]
        values += randomFloats(1000, in: -1000...1000, seed: 71)
        var mismatch: String?
        for v in values where mismatch == nil {
            let got = m2k_bf16_from_float(v), want = Self.swiftBF16(v)
            if got != want {
                mismatch = "\(v) (\(String(v.bitPattern, radix: 16))): got \(got), want \(want)"
            }
            let back = m2k_bf16_to_float(want).bitPattern
            if back != UInt32(want) << 16 { mismatch = "widening \(want) gives \(back)" }
        }
        #expect(mismatch == nil, "\(mismatch ?? "")")
        let nan = m2k_bf16_from_float(.nan)
        #expect(m2k_bf16_to_float(nan).isNaN, "NaN gives \(nan)")
        #expect(m2k_bf16_from_float(.greatestFiniteMagnitude) == 0x7f80, "max float → inf")
    }

    @Test("m2k_bf16_native: only the AVX-512 table, on a CPU with AVX512_BF16")
    func dispatch() {
        let f = m2k_cpu()!.pointee
        for table in availableVariants() {
            let native = m2k_bf16_native(table) != 0
            let want = table.name == "avx512" && f.avx512bf16 != 0 && f.avx512bw != 0
                && f.avx512vl != 0
            #expect(native == want, "\(table.name): native \(native)")
        }
    }

    @Test("m2k_bf16_gemm, every path, every epilogue, pool and no pool",
          arguments: shapes.indices)
    func gemm(_ index: Int) throws {
        let (m, n, kdim) = Self.shapes[index]
        let seed = 70_000 + UInt64(index) * 10
        let x = StridedMatrix(rows: m, cols: kdim, ld: kdim + 2, in: -2...2, seed: seed)
        let w = randomFloats(n * kdim, in: -1...1, seed: seed + 1)
        let bias = randomFloats(n, in: -1...1, seed: seed + 2)
        let c0 = StridedMatrix(rows: m, cols: n, ld: n + 3, in: -1...1, seed: seed + 3)
        let paths = availableBF16Paths()

        try withPool(threads: 2) { pool in
            for (withBias, act, accumulate, epilogue) in gemmEpilogues {
                var want = c0
                withOptionalPointer(withBias ? bias : nil) { biasPointer in
                    m2k_ref_bf16_gemm(m, n, kdim, x.storage, x.ld, w, &want.storage, want.ld,
                                      biasPointer, act, accumulate ? 1 : 0)
                }
                for path in paths {
                    path.withTable { table in
                        let packed = PackedBF16Weights(w, n: n, kdim: kdim, for: table)
                        for (p, poolName) in [(pool, "2 threads"), (nil, "no pool")] {
                            var c = c0
                            withOptionalPointer(withBias ? bias : nil) { biasPointer in
                                m2k_bf16_gemm(table, p, m, n, kdim, x.storage, x.ld,
                                              packed.blob, &c.storage, c.ld, biasPointer, act,
                                              accumulate ? 1 : 0)
                            }
                            let detail = "\(m)×\(n)×\(kdim) \(epilogue) \(poolName)"
                            expectClose(c, want, Self.tolerance, kernel: "bf16_gemm",
                                        variant: path.description, detail: detail)
                        }
                    }
                }
            }
        }
    }


    @Test("bf16 is close to the fp32 GEMM on normal data (cosine ≥ 0.999)")
    func closeToFloat() {
        let (m, n, kdim) = (16, 48, 768)
        let x = normals(m * kdim, seed: 81)
        let w = normals(n * kdim, seed: 82).map { 0.05 * $0 }
        var y32 = [Float](repeating: 0, count: m * n)
        m2k_ref_gemm(m, n, kdim, x, kdim, w, kdim, M2K_B_NK, &y32, n, nil, M2K_ACT_NONE, 0)
        for path in availableBF16Paths() {
            path.withTable { table in
                let packed = PackedBF16Weights(w, n: n, kdim: kdim, for: table)
                var y16 = [Float](repeating: 0, count: m * n)
                m2k_bf16_gemm(table, nil, m, n, kdim, x, kdim, packed.blob, &y16, n, nil,
                              M2K_ACT_NONE, 0)
                var (dot, norm16, norm32) = (0.0, 0.0, 0.0)
                for i in 0..<(m * n) {
                    dot += Double(y16[i]) * Double(y32[i])
                    norm16 += Double(y16[i]) * Double(y16[i])
                    norm32 += Double(y32[i]) * Double(y32[i])
                }
                let cosine = dot / (norm16 * norm32).squareRoot()
                #expect(cosine >= 0.999, "[\(path)] cosine \(cosine)")
            }
        }
    }
}
