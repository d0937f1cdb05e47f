import CKernels
import Testing

/// Every variant's element-wise kernels against the scalar reference (m2k_ref_*). Row lengths
/// cover 1, exact vector multiples (8, 16) and the lengths around them, so every tail path
/// runs; row strides are larger than the rows, and the padding must come back untouched.
@Suite("Element-wise kernels match the reference")
struct ElementwiseKernelTests {
    /// Activations: within 1e-6 of max(1, |reference|); the SIMD exp is within 1 ulp of expf
    /// and the erfc fit within 1.2e-7 relative, so ~2e-7 is what they measure.
    static let activationTolerance = Tolerance.element(1e-6)
    /// Softmax: within 1e-6 of the row's largest probability (fp32 sum vs the reference's double).
    static let softmaxTolerance = Tolerance.row(1e-6, floor: 0)
    /// LayerNorm: within 2e-6 of max(1, row's largest |output|): fp32 sums of up to ~1000
    /// elements against the reference's double mean and variance.
    static let layerNormTolerance = Tolerance.row(2e-6)

    static let rowLengths = [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 197]

    @Test("layernorm: shapes, large mean, in place")
    func layerNorm() {
        let shapes = [(1, 1), (3, 7), (4, 8), (4, 16), (5, 33), (2, 197), (2, 768), (2, 1001)]
        // (offset, spread): ordinary activations, and rows whose mean dwarfs their spread.
        let distributions: [(Float, Float)] = [(0.3, 2), (100, 0.1)]
        var seed: UInt64 = 1
        for (rows, cols) in shapes {
            for (offset, spread) in distributions {
                seed += 1
                let x = StridedMatrix(rows: rows, cols: cols, ld: cols + 5,
                                      in: offset - spread...offset + spread, seed: seed)
                let gamma = randomFloats(cols, in: 0.5...1.5, seed: seed + 100)
                let beta = randomFloats(cols, in: -0.5...0.5, seed: seed + 200)
                var want = StridedMatrix(rows: rows, cols: cols, ld: cols + 3) { _, _ in 0 }
                m2k_ref_layernorm(x.storage, &want.storage, gamma, beta, rows, cols, x.ld,
                                  want.ld, 1e-5)
                let detail = "\(rows)×\(cols) mean \(offset) spread \(spread)"

                for k in availableVariants() {
                    var y = want.blank()
                    k.pointee.layernorm!(x.storage, &y.storage, gamma, beta, rows, cols, x.ld,
                                         y.ld, 1e-5)
                    expectClose(y, want, Self.layerNormTolerance, kernel: "layernorm",
                                variant: k.name, detail: detail)

                    // y == x: the transformer normalises its residual stream in place.
                    var inPlace = StridedMatrix(rows: rows, cols: cols, ld: cols + 3) {
                        x[$0, $1]
                    }
                    inPlace.storage.withUnsafeMutableBufferPointer { p in
                        k.pointee.layernorm!(p.baseAddress, p.baseAddress, gamma, beta, rows,
                                             cols, inPlace.ld, inPlace.ld, 1e-5)
                    }
                    expectClose(inPlace, want, Self.layerNormTolerance, kernel: "layernorm",
                                variant: k.name, detail: detail + " in place")
                }
            }
        }
    }

    /// (rows, cols, scale, causal offset or nil for no mask, input range)
    static let softmaxCases: [(Int, Int, Float, Int?, ClosedRange<Float>)] =
        rowLengths.map { (3, $0, 1, nil, -4...4) } + [
            (5, 33, 0.125, nil, -40...40),   // attention's 1/√64
            (4, 17, -0.5, nil, -4...4),       // negative scale: the max is of scale·x
            (3, 40, 1, nil, -100...100),      // e^(x − max) deep into the subnormals and 0
            (9, 20, 1, 0, -4...4),            // causal: row r keeps r + 1 columns
            (20, 20, 0.125, 0, -8...8),
            (6, 35, 1, 3, -4...4),            // offset: row r keeps r + 4 columns
            (6, 19, 1, -2, -4...4),           // the first two rows keep nothing: all zeros
            (4, 9, 1, 30, -4...4),            // offset past the row: nothing masked
            (5, 197, 0.125, 150, -8...8),
        ]

    @Test("softmax: plain, scaled, causal with offsets", arguments: softmaxCases.indices)
    func softmax(_ index: Int) {
        let (rows, cols, scale, offset, range) = Self.softmaxCases[index]
        let x = StridedMatrix(rows: rows, cols: cols, ld: cols + 2, in: range,
                              seed: 500 + UInt64(index))
        var want = x
        m2k_ref_softmax(&want.storage, rows, cols, want.ld, scale, offset == nil ? 0 : 1,
                        offset ?? 0)
        let detail = "\(rows)×\(cols) scale \(scale) "
            + (offset.map { "causal offset \($0)" } ?? "no mask")
        for k in availableVariants() {
            var y = x
            k.pointee.softmax!(&y.storage, rows, cols, y.ld, scale, offset == nil ? 0 : 1,
                               offset ?? 0)
            expectClose(y, want, Self.softmaxTolerance, kernel: "softmax", variant: k.name,
                        detail: detail)
        }
    }

    /// Inputs for the activations: a dense grid over the interesting range, random values,
    /// and the extremes (±0, tiny, huge, ±inf, NaN) where exp and erfc must not make NaN.
    static func activationInputs(count: Int, seed: UInt64) -> StridedMatrix {
        let special: [Float] = [0, -0.0, 1e-30, -1e-30, 1e30, -1e30, 88, -88, 104, -104,
                                .infinity, -.infinity, .nan, .leastNonzeroMagnitude,
                                .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        let grid = stride(from: Float(-20), through: 20, by: 1.0 / 256).map { $0 }
        let values = special + grid + randomFloats(count, in: -12...12, seed: seed)
        return StridedMatrix(rows: 1, cols: values.count) { _, c in values[c] }
    }

    @Test("quickgelu and gelu: grid, extremes, every tail length")
    func activationsInPlace() {
        let full = Self.activationInputs(count: 1000, seed: 7)
        for name in ["quickgelu", "gelu"] {
            let reference = name == "gelu" ? m2k_ref_gelu : m2k_ref_quickgelu
            for n in [0] + Self.rowLengths + [full.cols] {
                let x = StridedMatrix(rows: 1, cols: n) { full[0, $1] }
                var want = x
                reference(&want.storage, n)
                for k in availableVariants() {
                    var y = x
                    let kernel = name == "gelu" ? k.pointee.gelu! : k.pointee.quickgelu!
                    kernel(&y.storage, n)
                    expectClose(y, want, Self.activationTolerance, kernel: name,
                                variant: k.name, detail: "n=\(n)")
                }
            }
        }
    }

    @Test("add: every tail length, exact")
    func add() {
        for n in [0] + Self.rowLengths + [1000] {
            let x = randomFloats(n, in: -3...3, seed: 900 + UInt64(n))
            let y0 = StridedMatrix(rows: 1, cols: n, in: -3...3, seed: 950 + UInt64(n))
            var want = y0
            m2k_ref_add(&want.storage, x, n)
            for k in availableVariants() {
                var y = y0
                k.pointee.add!(&y.storage, x, n)
                // One rounding of the same two floats: bit for bit the reference.
                expectClose(y, want, .exact, kernel: "add", variant: k.name, detail: "n=\(n)")
            }
        }
    }

    @Test("bias_act: each activation, with and without bias, odd sizes")
    func biasActivation() {
        let shapes = [(1, 1), (3, 7), (2, 8), (5, 16), (4, 33), (2, 100)]
        var seed: UInt64 = 1000
        for (m, n) in shapes {
            seed += 1
            let c0 = StridedMatrix(rows: m, cols: n, ld: n + 3, in: -6...6, seed: seed)
            let bias = randomFloats(n, in: -1...1, seed: seed + 50)
            for (act, actName) in activations {
                for withBias in [false, true] {
                    var want = c0
                    withOptionalPointer(withBias ? bias : nil) { b in
                        m2k_ref_bias_act(&want.storage, want.ld, Int32(m), Int32(n), b, act)
                    }
                    for k in availableVariants() {
                        var c = c0
                        withOptionalPointer(withBias ? bias : nil) { b in
                            k.pointee.bias_act!(&c.storage, c.ld, Int32(m), Int32(n), b, act)
                        }
                        let detail = "\(m)×\(n) \(actName) \(withBias ? "bias" : "no bias")"
                        expectClose(c, want, Self.activationTolerance, kernel: "bias_act",
                                    variant: k.name, detail: detail)
                    }
                }
            }
        }
    }
}
