import CKernels
import Foundation
import Testing
import Ops

/// One int8 micro-kernel of one table: m2k_q8_pack takes the first kernel of the table's list
/// that the CPU runs, so each kernel is tested through a copy of its table whose list holds
/// only that kernel. This is how the AVX2 kernel without AVX-VNNI (and the AVX-512 table's
/// fallbacks) runs on a CPU that has VNNI.
struct Q8Kernel: CustomStringConvertible {
    let table: UnsafePointer<m2k_kernels>
    let kernel: UnsafePointer<m2k_q8_kernel>

    var name: String { String(cString: kernel.pointee.name) }
    var description: String { "\(table.name)/\(name)" }

    /// `body` with a copy of the table that packs for this kernel only.
    func withTable<R>(_ body: (UnsafePointer<m2k_kernels>) throws -> R) rethrows -> R {
        let list = UnsafeMutablePointer<UnsafePointer<m2k_q8_kernel>?>.allocate(capacity: 2)
        defer { list.deallocate() }
        list[0] = kernel
        list[1] = nil
        var forced = table.pointee
        forced.q8_kernels = UnsafePointer(list)
        return try withUnsafePointer(to: &forced) { try body($0) }
    }
}

extension UnsafePointer<m2k_kernels> {
    /// The table's int8 kernels, best first.
    var q8Kernels: [UnsafePointer<m2k_q8_kernel>] {
        guard let list = pointee.q8_kernels else { return [] }
        var kernels: [UnsafePointer<m2k_q8_kernel>] = []
        var i = 0
        while let kernel = list[i] {
            kernels.append(kernel)
            i += 1
        }
        return kernels
    }
}

extension UnsafePointer<m2k_q8_kernel> {
    var runs: Bool { pointee.runs() != 0 }
}

/// Every (table, int8 kernel) pair this CPU runs.
func availableQ8Kernels() -> [Q8Kernel] {
    availableVariants().flatMap { table in
        table.q8Kernels.filter(\.runs).map { Q8Kernel(table: table, kernel: $0) }
    }
}

/// Weights quantized by m2k_q8_quantize_weights and packed for `table`, in m2k_alloc memory.
final class PackedQ8Weights {
    let blob: UnsafeMutableRawPointer
    init(_ wq: [Int8], scales: [Float], n: Int, kdim: Int, for table: UnsafePointer<m2k_kernels>) {
        blob = m2k_alloc(m2k_q8_packed_bytes(table, n, kdim))!
        m2k_q8_pack(table, n, kdim, wq, scales, blob)
    }
    deinit { m2k_free(blob) }
}

/// Per-channel quantization (N, K) → (Wq, w_scale) through m2k_q8_quantize_weights.
func quantizeWeights(_ w: [Float], n: Int, kdim: Int) -> (wq: [Int8], scales: [Float]) {
    var wq = [Int8](repeating: 0, count: n * kdim)
    var scales = [Float](repeating: 0, count: n)
    m2k_q8_quantize_weights(w, n, kdim, &wq, &scales)
    return (wq, scales)
}

/// m2k_q8_quantize_weights against a Swift loop; m2k_q8_gemm with every int8 micro-kernel
/// this CPU runs (scalar, avx2 with and without AVX-VNNI, avx512-vnni, and each table's
/// fallbacks) against m2k_ref_q8_gemm; rounding ties and a subnormal scale; an all-zero row;
/// int8 against the fp32 reference GEMM on normal data.
// No closure appears inside an #expect here (the Swift 6.3.1 bug described in RuntimeTests).
@Suite("int8 GEMM matches the reference")
struct Q8GemmTests {
    /// The integer sums are exact: only the final float steps (and the vector activations)
    /// may differ from the reference, within 1e-5 of max(1, the row's largest |C|).
    static let tolerance = Tolerance.row(1e-5)

    /// (M, N, K): one element; odd sizes, K not a multiple of 4 and N not of any panel;
    /// exactly one AVX-512 (12×32), AVX2-VNNI (6×16) and AVX2 (6×8) tile; K = 0 (C = act(bias));
    /// K = 3072 (the MLP's second layer); M over two of the driver's 192-row blocks; several
    /// panels and N chunks; a ViT-like block.
    static let shapes = [
        (1, 1, 1), (13, 37, 29), (12, 32, 32), (6, 16, 16), (6, 8, 8), (5, 3, 0), (7, 40, 3072),
        (200, 45, 33), (25, 300, 70), (197, 64, 768),
    ]


    @Test("the tables list their int8 kernels and m2k_q8_pack takes the best this CPU runs")
    func dispatch() {
        let f = m2k_cpu()!.pointee
        let expected: [String: [String]] = [
            "scalar": ["scalar"], "avx2": ["avx2-vnni", "avx2"],
            "avx512": ["avx512-vnni", "avx2-vnni", "avx2"],
            "neon": ["neon-i8mm", "neon-dot", "neon"],
        ]
        for table in availableVariants() {
            let names = table.q8Kernels.map { String(cString: $0.pointee.name) }
            #expect(names == expected[table.name], "\(table.name): \(names)")
            let chosen = table.q8Kernels.first(where: \.runs).map {
                String(cString: $0.pointee.name)
            }
            var want = names.first
            switch table.name {
            case "avx512":
                want = f.avx512vnni != 0 ? "avx512-vnni" : f.avxvnni != 0 ? "avx2-vnni" : "avx2"
            case "avx2": want = f.avxvnni != 0 ? "avx2-vnni" : "avx2"
            case "neon": want = f.i8mm != 0 ? "neon-i8mm" : f.asimddp != 0 ? "neon-dot" : "neon"
            default: break
            }
            #expect(chosen == want, "\(table.name) packs for \(chosen ?? "none")")
            for kernel in table.q8Kernels {
                let k = kernel.pointee
                let sane = k.mr > 0 && k.nr > 0 && k.mr * k.nr <= 32 * 64 && k.nr <= 64
                    && k.kgroup > 0 && (k.a_offset == 0 || k.a_offset == 128)
                    && k.quantize != nil && k.micro != nil
                #expect(sane, "\(table.name)/\(String(cString: k.name)): tile or fields")
            }
        }
    }

    @Test("m2k_q8_quantize_weights: per-channel scale and round-to-nearest-even, as a Swift loop")
    func quantizeWeightsMatchesSwift() {
        let (n, kdim) = (9, 37)
        var w = randomFloats(n * kdim, in: -3...3, seed: 31)
        for k in 0..<kdim { w[kdim + k] = 0 }  // an all-zero channel: scale 0, all 0
        // Ties: channel 2 has scale exactly 1 and values on half-integers.
        for k in 0..<kdim { w[2 * kdim + k] = Float(k % 9 - 4) + 0.5 }
        w[2 * kdim] = 127
        let (wq, scales) = quantizeWeights(w, n: n, kdim: kdim)
        var mismatch: String?
        for j in 0..<n where mismatch == nil {
            let row = w[(j * kdim)..<((j + 1) * kdim)]
            let scale = (row.map(abs).max() ?? 0) / 127
            if scales[j].bitPattern != scale.bitPattern {
                mismatch = "scale[\(j)] = \(scales[j]), want \(scale)"
            }
            for k in 0..<kdim where mismatch == nil {
                let value = w[j * kdim + k]
                let want = scale > 0 ? Int8((value / scale).rounded(.toNearestOrEven)) : 0
                if wq[j * kdim + k] != want {
                    mismatch = "wq[\(j), \(k)] = \(wq[j * kdim + k]) for \(value), want \(want)"
                }
            }
        }
        #expect(mismatch == nil, "\(mismatch ?? "")")
    }

    /// x (m, k) with ld k + 2: row 0 holds ties at scale 1 (127, then ±0.5, ±1.5 …), row m/2
    /// is all zero, the rest uniform in [-2, 2].
    static func activations(m: Int, kdim: Int, seed: UInt64) -> StridedMatrix {
        let values = randomFloats(m * kdim, in: -2...2, seed: seed)
        return StridedMatrix(rows: m, cols: kdim, ld: kdim + 2) { r, c in
            if r == 0 && m > 1 { return c == 0 ? 127 : Float(c % 9 - 4) + 0.5 }
            if r == m / 2 && m > 2 { return 0 }
            return values[r * kdim + c]
        }
    }

    @Test("m2k_q8_gemm, every int8 kernel, every epilogue, pool and no pool",
          arguments: shapes.indices)
    func gemm(_ index: Int) throws {
        let (m, n, kdim) = Self.shapes[index]
        let seed = 40_000 + UInt64(index) * 10
        let x = Self.activations(m: m, kdim: kdim, seed: seed)
        let w = randomFloats(n * kdim, in: -1...1, seed: seed + 1)
        let bias = randomFloats(n, in: -1...1, seed: seed + 2)
        let c0 = StridedMatrix(rows: m, cols: n, ld: n + 3, in: -1...1, seed: seed + 3)
        let (wq, scales) = quantizeWeights(w, n: n, kdim: kdim)
        let kernels = availableQ8Kernels()

        try withPool(threads: 2) { pool in
            for (withBias, act, accumulate, epilogue) in gemmEpilogues {
                var want = c0
                withOptionalPointer(withBias ? bias : nil) { biasPointer in
                    m2k_ref_q8_gemm(m, n, kdim, x.storage, x.ld, wq, scales, &want.storage,
                                    want.ld, biasPointer, act, accumulate ? 1 : 0)
                }
                for kernel in kernels {
                    kernel.withTable { table in
                        let packed = PackedQ8Weights(wq, scales: scales, n: n, kdim: kdim,
                                                     for: table)
                        for (p, poolName) in [(pool, "2 threads"), (nil, "no pool")] {
                            var c = c0
                            withOptionalPointer(withBias ? bias : nil) { biasPointer in
                                m2k_q8_gemm(table, p, m, n, kdim, x.storage, x.ld, packed.blob,
                                            &c.storage, c.ld, biasPointer, act,
                                            accumulate ? 1 : 0)
                            }
                            let detail = "\(m)×\(n)×\(kdim) \(epilogue) \(poolName)"
                            expectClose(c, want, Self.tolerance, kernel: "q8_gemm",
                                        variant: kernel.description, detail: detail)
                        }
                    }
                }
            }
        }
    }

    /// Rows that catch a quantizer cutting corners, read back through Wq = 127 · I (w_scale 1),
    /// so y[n] = x_scale · 127 · xq[n]: a row whose scale is subnormal (1/scale is inexact: the
    /// SIMD quantizers must divide), a row on rounding ties at scale 1 (to even), and the same
    /// values one ulp off the ties. Bit-exact against the reference.
    @Test("rounding: ties to even, one ulp off the ties, a subnormal scale; bit-exact")
    func roundingEdges() {
        let (m, kdim) = (3, 37)
        let x = StridedMatrix(rows: m, cols: kdim) { r, c in
            let tie = Float(c % 11 - 5) + 0.5
            switch r {
            case 0: return Float.leastNormalMagnitude / 8 * Float(c % 7 - 3) / 3  // subnormal scale
            case 1: return c == 0 ? 127 : (c % 2 == 1 ? tie.nextUp : tie.nextDown)
            default: return c == 0 ? 127 : tie
            }
        }
        var wq = [Int8](repeating: 0, count: kdim * kdim)
        for j in 0..<kdim { wq[j * kdim + j] = 127 }
        let scales = [Float](repeating: 1, count: kdim)
        var want = StridedMatrix(rows: m, cols: kdim) { _, _ in 0 }
        m2k_ref_q8_gemm(m, kdim, kdim, x.storage, x.ld, wq, scales, &want.storage, want.ld, nil,
                        M2K_ACT_NONE, 0)
        for kernel in availableQ8Kernels() {
            kernel.withTable { table in
                let packed = PackedQ8Weights(wq, scales: scales, n: kdim, kdim: kdim, for: table)
                var got = want.blank()
                m2k_q8_gemm(table, nil, m, kdim, kdim, x.storage, x.ld, packed.blob,
                            &got.storage, got.ld, nil, M2K_ACT_NONE, 0)
                expectClose(got, want, .exact, kernel: "q8_gemm", variant: kernel.description,
                            detail: "rounding edges")
            }
        }
    }

    @Test("an all-zero row quantizes to 0 with scale 0: its output is exactly the bias")
    func zeroRow() {
        let (m, n, kdim) = (3, 21, 19)
        let x = StridedMatrix(rows: m, cols: kdim) { r, c in r == 1 ? 0 : Float(c - r) / 7 }
        let w = randomFloats(n * kdim, in: -1...1, seed: 51)
        let bias = randomFloats(n, in: -1...1, seed: 52)
        let (wq, scales) = quantizeWeights(w, n: n, kdim: kdim)
        for kernel in availableQ8Kernels() {
            kernel.withTable { table in
                let packed = PackedQ8Weights(wq, scales: scales, n: n, kdim: kdim, for: table)
                var c = StridedMatrix(rows: m, cols: n) { _, _ in 0 }
                m2k_q8_gemm(table, nil, m, n, kdim, x.storage, x.ld, packed.blob, &c.storage,
                            c.ld, bias, M2K_ACT_NONE, 0)
                let row = (0..<n).map { c[1, $0] }
                #expect(row == bias, "[\(kernel)] zero row gives \(row)")
            }
        }
    }


    @Test("int8 is close to the fp32 GEMM on normal data (cosine ≥ 0.999)")
    func closeToFloat() {
        let (m, n, kdim) = (16, 48, 768)
        let x = normals(m * kdim, seed: 61)
        let w = normals(n * kdim, seed: 62).map { 0.05 * $0 }
        let (wq, scales) = quantizeWeights(w, n: n, kdim: kdim)
        var y32 = [Float](repeating: 0, count: m * n)
        m2k_ref_gemm(m, n, kdim, x, kdim, w, kdim, M2K_B_NK, &y32, n, nil, M2K_ACT_NONE, 0)
        for kernel in availableQ8Kernels() {
            kernel.withTable { table in
                let packed = PackedQ8Weights(wq, scales: scales, n: n, kdim: kdim, for: table)
                var y8 = [Float](repeating: 0, count: m * n)
                m2k_q8_gemm(table, nil, m, n, kdim, x, kdim, packed.blob, &y8, n, nil,
                            M2K_ACT_NONE, 0)
                var (dot, norm8, norm32) = (0.0, 0.0, 0.0)
                for i in 0..<(m * n) {
                    dot += Double(y8[i]) * Double(y32[i])
                    norm8 += Double(y8[i]) * Double(y8[i])
                    norm32 += Double(y32[i]) * Double(y32[i])
                }
                let cosine = dot / (norm8 * norm32).squareRoot()
                #expect(cosine >= 0.999, "[\(kernel)] cosine \(cosine)")
            }
        }
    }
}
