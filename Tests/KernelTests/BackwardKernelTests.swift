import CKernels
import Testing

/// The training kernels (kernels.h, "backward"). Two kinds of check:
/// - every variant's drivers (m2k_sgemm_dx, m2k_sgemm_dw, m2k_layernorm_backward_rows,
///   m2k_activation_backward, m2k_attention_backward, the depthwise convolutions' backward)
///   against their scalar references m2k_ref_*_backward, on a 2-thread pool and with no pool,
///   with odd sizes (not multiples of any variant's mr, nr or vector width), strided rows whose
///   padding must come back untouched, and the accumulate / NULL-output cases;
/// - each reference against central finite differences of its forward on a scalar loss
///   L = Σ y · R (R random, so ∂L/∂y = R), which makes the references an independent oracle
///   rather than a second copy of the same algebra.
@Suite("Backward kernels match the reference and the finite differences")
struct BackwardKernelTests {
    /// GEMM-shaped gradients (dx, dW, attention): within 1e-5 of max(1, the row's largest
    /// |reference|), as the forward GEMM: fp32 sums of up to a few hundred products against
    /// the reference's double sums.
    static let gemmTolerance = Tolerance.row(1e-5)
    /// Bias and dwconv sums over up to 600 rows, in fp32 against double: 1e-5 of the row.
    static let sumTolerance = Tolerance.row(1e-5)
    /// LayerNorm dx: 2e-6 of max(1, the row's largest |dx|), as the forward LayerNorm: mean,
    /// variance and the two means of dx̂ are fp32 sums of up to 768 terms (the reference's are
    /// double), the mean kept unrounded as the forward keeps it; ~2.5e-7 is what they measure.
    static let layerNormTolerance = Tolerance.row(2e-6)
    /// dγ, dβ: fp32 sums over 150 rows of dy · x̂ (per task, then the tasks in order) on top of
    /// the values already there, against one double sum: 5e-6 of max(1, the largest).
    static let layerNormParameterTolerance = Tolerance.row(5e-6)
    /// Activation derivatives: within 1e-6 of max(1, |reference|); the SIMD exp is within
    /// 1 ulp of expf and the erfc fit within 1.2e-7 relative, as in the forward kernels.
    static let activationTolerance = Tolerance.element(1e-6)

    static let pools: [(Bool, String)] = [(true, "2 threads"), (false, "no pool")]

    // MARK: - drivers against the references

    /// (m, n, kdim): odd sizes everywhere; kdim past one dx slice (8 panels of nr) for every
    /// variant, and m past one M block of the GEMM.
    static let linearShapes = [(37, 45, 70), (1, 1, 1), (200, 33, 300)]

    @Test("m2k_sgemm_dx through packed weights, written and accumulated",
          arguments: linearShapes.indices)
    func sgemmDx(_ index: Int) throws {
        let (m, n, kdim) = Self.linearShapes[index]
        let seed = 40_000 + UInt64(index) * 10
        let dy = StridedMatrix(rows: m, cols: n, ld: n + 3, in: -1...1, seed: seed)
        // W as the forward's Linear weight (out = n, in = kdim).
        let w = StridedMatrix(rows: n, cols: kdim, ld: kdim, in: -1...1, seed: seed + 1)
        let dx0 = StridedMatrix(rows: m, cols: kdim, ld: kdim + 2, in: -1...1, seed: seed + 2)
        try withPool(threads: 2) { pool in
            for accumulate in [false, true] {
                var want = dx0
                m2k_ref_sgemm_dx(m, n, kdim, dy.storage, dy.ld, w.storage, w.ld, &want.storage,
                                 want.ld, accumulate ? 1 : 0)
                for k in availableVariants() {
                    let floats = m2k_packed_b_floats(k.pointee.nr, n, kdim)
                    let packed = m2k_alloc(floats * MemoryLayout<Float>.size)!
                        .bindMemory(to: Float.self, capacity: floats)
                    defer { m2k_free(packed) }
                    m2k_pack_b(k.pointee.nr, n, kdim, w.storage, kdim, M2K_B_NK, packed)
                    for (usePool, poolName) in Self.pools {
                        var dx = dx0
                        m2k_sgemm_dx(k, usePool ? pool : nil, m, n, kdim, dy.storage, dy.ld,
                                     packed, &dx.storage, dx.ld, accumulate ? 1 : 0)
                        let detail = "\(m)×\(n)×\(kdim) accumulate \(accumulate) \(poolName)"
                        expectClose(dx, want, Self.gemmTolerance, kernel: "sgemm_dx",
                                    variant: k.name, detail: detail)
                    }
                }
            }
        }
    }

    /// (m, n, kdim): odd sizes; m past dW's 512-row chunk (partial sums carried in dw).
    static let weightShapes = [(37, 45, 70), (1, 1, 1), (600, 9, 20)]

    @Test("m2k_sgemm_dw accumulates dW and db (db NULL too)", arguments: weightShapes.indices)
    func sgemmDw(_ index: Int) throws {
        let (m, n, kdim) = Self.weightShapes[index]
        let seed = 41_000 + UInt64(index) * 10
        let dy = StridedMatrix(rows: m, cols: n, ld: n + 3, in: -1...1, seed: seed)
        let x = StridedMatrix(rows: m, cols: kdim, ld: kdim + 1, in: -1...1, seed: seed + 1)
        // dW (n, kdim) and db (n) hold earlier contributions: the kernel must add to them.
        let dw0 = StridedMatrix(rows: n, cols: kdim, in: -1...1, seed: seed + 2)
        let db0 = StridedMatrix(rows: 1, cols: n, in: -1...1, seed: seed + 3)
        var wantW = dw0, wantB = db0
        m2k_ref_sgemm_dw(m, n, kdim, dy.storage, dy.ld, x.storage, x.ld, &wantW.storage,
                         &wantB.storage)
        try withPool(threads: 2) { pool in
            for k in availableVariants() {
                for (usePool, poolName) in Self.pools {
                    let detail = "\(m)×\(n)×\(kdim) \(poolName)"
                    var dw = dw0, db = db0
                    m2k_sgemm_dw(k, usePool ? pool : nil, m, n, kdim, dy.storage, dy.ld,
                                 x.storage, x.ld, &dw.storage, &db.storage)
                    expectClose(dw, wantW, Self.gemmTolerance, kernel: "sgemm_dw dW",
                                variant: k.name, detail: detail)
                    expectClose(db, wantB, Self.sumTolerance, kernel: "sgemm_dw db",
                                variant: k.name, detail: detail)
                    var dwOnly = dw0
                    m2k_sgemm_dw(k, usePool ? pool : nil, m, n, kdim, dy.storage, dy.ld,
                                 x.storage, x.ld, &dwOnly.storage, nil)
                    expectClose(dwOnly, wantW, Self.gemmTolerance, kernel: "sgemm_dw dW",
                                variant: k.name, detail: detail + " db NULL")
                }
            }
        }
    }

    /// Which outputs a LayerNorm backward call asks for: dx (none, written, accumulated),
    /// dγ, dβ (NULL when frozen).
    enum InputGradient { case none, write, accumulate }
    static let layerNormOutputs: [(InputGradient, Bool, Bool, String)] = [
        (.write, true, true, "dx, dγ, dβ"),
        (.accumulate, true, true, "dx accumulated, dγ, dβ"),
        (.accumulate, false, true, "dx accumulated, dγ NULL"),
        (.write, true, false, "dx, dβ NULL"),
        (.none, true, true, "dx NULL, dγ, dβ"),
    ]

    /// (rows, cols, mean, spread): rows past one 64-row task; cols of 1, around and between
    /// vector widths, CLIP's widths; a mean 1000× the spread, where fp32 statistics drift.
    static let layerNormShapes: [(Int, Int, Float, Float)] = [
        (150, 45, 0.3, 2), (3, 1, 0, 1), (5, 17, -1, 3), (70, 197, 100, 0.1), (4, 768, 0, 1),
    ]

    @Test("m2k_layernorm_backward_rows: dx written, accumulated or NULL; dγ, dβ or NULL",
          arguments: layerNormShapes.indices)
    func layerNormBackward(_ index: Int) throws {
        let (rows, cols, mean, spread) = Self.layerNormShapes[index]
        let seed = 42_000 + UInt64(index) * 10
        let x = StridedMatrix(rows: rows, cols: cols, ld: cols + 5,
                              in: mean - spread...mean + spread, seed: seed)
        let dy = StridedMatrix(rows: rows, cols: cols, ld: cols + 2, in: -1...1, seed: seed + 1)
        let gamma = randomFloats(cols, in: 0.5...1.5, seed: seed + 2)
        let dx0 = StridedMatrix(rows: rows, cols: cols, ld: cols + 3, in: -1...1, seed: seed + 3)
        let dgamma0 = StridedMatrix(rows: 1, cols: cols, in: -1...1, seed: seed + 4)
        let dbeta0 = StridedMatrix(rows: 1, cols: cols, in: -1...1, seed: seed + 5)
        let eps: Float = 1e-5

        // One call with the outputs `wanted` asks for; nil matrices are passed as NULL.
        func run(_ wanted: (InputGradient, Bool, Bool), _ call: (
            UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?,
            UnsafeMutablePointer<Float>?, Int32
        ) -> Void) -> (StridedMatrix, StridedMatrix, StridedMatrix) {
            var dx = dx0, dgamma = dgamma0, dbeta = dbeta0
            dx.storage.withUnsafeMutableBufferPointer { pdx in
                dgamma.storage.withUnsafeMutableBufferPointer { pg in
                    dbeta.storage.withUnsafeMutableBufferPointer { pb in
                        call(wanted.0 == .none ? nil : pdx.baseAddress,
                             wanted.1 ? pg.baseAddress : nil, wanted.2 ? pb.baseAddress : nil,
                             wanted.0 == .accumulate ? 1 : 0)
                    }
                }
            }
            return (dx, dgamma, dbeta)
        }

        try withPool(threads: 2) { pool in
            for (input, wantGamma, wantBeta, outputs) in Self.layerNormOutputs {
                let wanted = (input, wantGamma, wantBeta)
                let want = run(wanted) { dx, dg, db, acc in
                    m2k_ref_layernorm_backward(x.storage, x.ld, dy.storage, dy.ld, gamma, dx,
                                               dx0.ld, dg, db, rows, cols, eps, acc)
                }
                for k in availableVariants() {
                    for (usePool, poolName) in Self.pools {
                        let got = run(wanted) { dx, dg, db, acc in
                            m2k_layernorm_backward_rows(k, usePool ? pool : nil, x.storage, x.ld,
                                                        dy.storage, dy.ld, gamma, dx, dx0.ld,
                                                        dg, db, rows, cols, eps, acc)
                        }
                        let detail = "\(rows)×\(cols) mean \(mean) spread \(spread) "
                            + "\(outputs) \(poolName)"
                        // Outputs not asked for must come back as they were (== the reference's).
                        expectClose(got.0, want.0, Self.layerNormTolerance,
                                    kernel: "layernorm_backward dx", variant: k.name,
                                    detail: detail)
                        expectClose(got.1, want.1, Self.layerNormParameterTolerance,
                                    kernel: "layernorm_backward dγ", variant: k.name,
                                    detail: detail)
                        expectClose(got.2, want.2, Self.layerNormParameterTolerance,
                                    kernel: "layernorm_backward dβ", variant: k.name,
                                    detail: detail)
                    }
                }
            }
        }
    }

    /// Lengths: 1, around the 4-, 8- and 16-float vectors, and past the driver's 16384-float
    /// chunk (several pool tasks with a partial last one).
    static let activationLengths = [1, 3, 7, 8, 9, 15, 16, 17, 33, 1037, 40_000]

    @Test("m2k_activation_backward, every activation, dx separate and dx == dy",
          arguments: activationLengths)
    func activationBackward(_ n: Int) throws {
        let seed = 43_000 + UInt64(n)
        // x over both tails of σ and Φ; a few far-out values where exp under- and overflows.
        var xValues = randomFloats(n, in: -8...8, seed: seed)
        let far: [Float] = [-1e30, -100, -60, -20, 20, 60, 100, 1e30]
        for (i, v) in far.enumerated() where i * 5 < n { xValues[i * 5] = v }
        let x = StridedMatrix(rows: 1, cols: n) { _, c in xValues[c] }
        let dy = StridedMatrix(rows: 1, cols: n, in: -2...2, seed: seed + 1)
        try withPool(threads: 2) { pool in
            for (act, actName) in activations {
                var want = dy.blank()
                m2k_ref_activation_backward(act, x.storage, dy.storage, &want.storage, n)
                for k in availableVariants() {
                    for (usePool, poolName) in Self.pools {
                        let detail = "n \(n) \(actName) \(poolName)"
                        var dx = dy.blank()
                        m2k_activation_backward(k, usePool ? pool : nil, act, x.storage,
                                                dy.storage, &dx.storage, n)
                        expectClose(dx, want, Self.activationTolerance,
                                    kernel: "activation_backward", variant: k.name,
                                    detail: detail)
                        var inPlace = dy
                        inPlace.storage.withUnsafeMutableBufferPointer { p in
                            m2k_activation_backward(k, usePool ? pool : nil, act, x.storage,
                                                    p.baseAddress, p.baseAddress, n)
                        }
                        expectClose(inPlace, want, Self.activationTolerance,
                                    kernel: "activation_backward", variant: k.name,
                                    detail: detail + " dx == dy")
                    }
                }
            }
        }
    }

    /// (seqs, tokens, heads, head_dim): the brief's small odd head; ViT-B/16's 197 tokens
    /// with 64-wide heads; queries are all tokens or fewer (a CLS-only last layer is 1).
    static let attentionShapes = [(2, 13, 3, 8), (1, 197, 2, 64)]

    @Test("m2k_attention_backward, causal and not, queries < tokens and == tokens",
          arguments: attentionShapes.indices)
    func attentionBackward(_ index: Int) throws {
        let (seqs, tokens, heads, headDim) = Self.attentionShapes[index]
        let width = heads * headDim
        let seed = 44_000 + UInt64(index) * 10
        // (seqs · tokens, 3 · width): Q, K, V side by side per token.
        let qkv = StridedMatrix(rows: seqs * tokens, cols: 3 * width, ld: 3 * width + 5,
                                in: -2...2, seed: seed)
        try withPool(threads: 2) { pool in
            for queries in [tokens, 5, 1] {
                // (seqs · queries, width)
                let dout = StridedMatrix(rows: seqs * queries, cols: width, ld: width + 3,
                                         in: -1...1, seed: seed + UInt64(queries))
                for causal: Int32 in [0, 1] {
                    var want = StridedMatrix(rows: seqs * tokens, cols: 3 * width,
                                             ld: 3 * width + 2) { _, _ in StridedMatrix.sentinel }
                    m2k_ref_attention_backward(seqs, tokens, queries, Int32(heads),
                                               Int32(headDim), qkv.storage, qkv.ld,
                                               dout.storage, dout.ld, &want.storage, want.ld,
                                               causal)
                    for k in availableVariants() {
                        for (usePool, poolName) in Self.pools {
                            var dqkv = want.blank()
                            m2k_attention_backward(k, usePool ? pool : nil, seqs, tokens, queries,
                                                   Int32(heads), Int32(headDim), qkv.storage,
                                                   qkv.ld, dout.storage, dout.ld,
                                                   &dqkv.storage, dqkv.ld, causal)
                            let detail = "seqs \(seqs) tokens \(tokens) queries \(queries) "
                                + "heads \(heads)×\(headDim) causal \(causal) \(poolName)"
                            expectClose(dqkv, want, Self.gemmTolerance,
                                        kernel: "attention_backward", variant: k.name,
                                        detail: detail)
                        }
                    }
                }
            }
        }
    }

    /// Which outputs a depthwise convolution backward call asks for: (dx, dw, dbias).
    static let convOutputs: [(Bool, Bool, Bool, String)] = [
        (true, true, true, "dx, dw, dbias"), (false, true, true, "dx NULL"),
        (true, false, false, "dw, dbias NULL"), (true, true, false, "dbias NULL"),
    ]

    /// One depthwise backward call per output set, against its reference, both with the
    /// same pre-filled dw and dbias (they accumulate).
    func checkConv(name: String, taps: Int, positions: Int, channels: Int, seed: UInt64,
                   shape: String, pool: OpaquePointer,
                   reference: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?,
                               UnsafeMutablePointer<Float>?) -> Void,
                   driver: (OpaquePointer?, UnsafeMutablePointer<Float>?,
                            UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void) {
        let dx0 = StridedMatrix(rows: positions, cols: channels, in: -1...1, seed: seed)
        let dw0 = StridedMatrix(rows: taps, cols: channels, in: -1...1, seed: seed + 1)
        let db0 = StridedMatrix(rows: 1, cols: channels, in: -1...1, seed: seed + 2)
        func run(_ wanted: (Bool, Bool, Bool),
                 _ call: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?,
                          UnsafeMutablePointer<Float>?) -> Void)
            -> (StridedMatrix, StridedMatrix, StridedMatrix) {
            var dx = dx0, dw = dw0, db = db0
            dx.storage.withUnsafeMutableBufferPointer { px in
                dw.storage.withUnsafeMutableBufferPointer { pw in
                    db.storage.withUnsafeMutableBufferPointer { pb in
                        call(wanted.0 ? px.baseAddress : nil, wanted.1 ? pw.baseAddress : nil,
                             wanted.2 ? pb.baseAddress : nil)
                    }
                }
            }
            return (dx, dw, db)
        }
        for (wantX, wantW, wantB, outputs) in Self.convOutputs {
            let wanted = (wantX, wantW, wantB)
            let want = run(wanted, reference)
            for (usePool, poolName) in Self.pools {
                let got = run(wanted) { driver(usePool ? pool : nil, $0, $1, $2) }
                let detail = "\(shape) \(outputs) \(poolName)"
                expectClose(got.0, want.0, Self.sumTolerance, kernel: name + " dx",
                            variant: "driver", detail: detail)
                expectClose(got.1, want.1, Self.sumTolerance, kernel: name + " dw",
                            variant: "driver", detail: detail)
                expectClose(got.2, want.2, Self.sumTolerance, kernel: name + " dbias",
                            variant: "driver", detail: detail)
            }
        }
    }

    @Test("m2k_temporal_dwconv3_backward and m2k_spatial_dwconv3x3_backward")
    func dwconvBackward() throws {
        try withPool(threads: 2) { pool in
            // (clips, frames, tokens, channels): channels past one 16-channel task; one frame.
            for (clips, frames, tokens, channels) in [(2, 5, 3, 37), (1, 1, 2, 5)] {
                let positions = clips * frames * tokens
                let seed = 45_000 + UInt64(positions * channels)
                let x = randomFloats(positions * channels, in: -1...1, seed: seed)
                let dy = randomFloats(positions * channels, in: -1...1, seed: seed + 1)
                let w = randomFloats(3 * channels, in: -1...1, seed: seed + 2)
                checkConv(name: "temporal_dwconv3_backward", taps: 3, positions: positions,
                          channels: channels, seed: seed + 3,
                          shape: "\(clips)×\(frames)×\(tokens)×\(channels)", pool: pool,
                          reference: { dx, dw, db in
                              m2k_ref_temporal_dwconv3_backward(x, dy, dx, clips, frames, tokens,
                                                                channels, w, dw, db)
                          },
                          driver: { p, dx, dw, db in
                              m2k_temporal_dwconv3_backward(p, x, dy, dx, clips, frames, tokens,
                                                            channels, w, dw, db)
                          })
            }
            // (frames, height, width, channels): a non-square grid; a 1×1 grid (no neighbours).
            for (frames, height, width, channels) in [(2, 5, 7, 37), (1, 1, 1, 3)] {
                let positions = frames * height * width
                let seed = 46_000 + UInt64(positions * channels)
                let x = randomFloats(positions * channels, in: -1...1, seed: seed)
                let dy = randomFloats(positions * channels, in: -1...1, seed: seed + 1)
                let w = randomFloats(9 * channels, in: -1...1, seed: seed + 2)
                checkConv(name: "spatial_dwconv3x3_backward", taps: 9, positions: positions,
                          channels: channels, seed: seed + 3,
                          shape: "\(frames)×\(height)×\(width)×\(channels)", pool: pool,
                          reference: { dx, dw, db in
                              m2k_ref_spatial_dwconv3x3_backward(x, dy, dx, frames, height, width,
                                                                 channels, w, dw, db)
                          },
                          driver: { p, dx, dw, db in
                              m2k_spatial_dwconv3x3_backward(p, x, dy, dx, frames, height, width,
                                                             channels, w, dw, db)
                          })
            }
        }
    }

    // MARK: - references against finite differences

    /// Central differences on the Float forwards with h = 1e-2: (L(v + h) − L(v − h)) divided
    /// by the step as actually rounded to Float. L is summed in Double from Float outputs, so
    /// its rounding noise is ~1e-7 · Σ|y · R| / 2h, ~1e-5 here; truncation is h²/6 · L''' ≈
    /// 2e-5 · L''' for the smooth ops (exact for the linear ones); ≤ 3e-5 of max(1, |gradient|)
    /// is what the checks measure. Each uses 1e-3 of max(1, |gradient|), 30× that, yet a sign
    /// error, a missing term or a swapped index (errors of order |gradient| ≈ 0.1–3 here) is
    /// far outside it — which every check also asserts by running the negated gradient
    /// through the same comparison.
    static let finiteDifferenceTolerance = 1e-3
    static let h: Float = 1e-2

    /// ∂loss/∂values[i] for every i by central differences.
    static func numericGradient(_ values: [Float], _ loss: ([Float]) -> Double) -> [Double] {
        var v = values
        return values.indices.map { i in
            let plus = values[i] + h, minus = values[i] - h
            v[i] = plus
            let up = loss(v)
            v[i] = minus
            let down = loss(v)
            v[i] = values[i]
            return (up - down) / (Double(plus) - Double(minus))
        }
    }

    /// L = Σ y · R in Double.
    static func dot(_ y: [Float], _ r: [Float]) -> Double {
        zip(y, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }

    /// The first index where the analytic gradient is off the numeric one by more than the
    /// tolerance, described; nil when all agree.
    static func gradientMismatch(_ analytic: [Float], _ numeric: [Double]) -> String? {
        precondition(analytic.count == numeric.count)
        for i in analytic.indices {
            let error = abs(Double(analytic[i]) - numeric[i])
            if !(error <= finiteDifferenceTolerance * max(1, abs(numeric[i]))) {
                return "index \(i): analytic \(analytic[i]), finite difference \(numeric[i])"
            }
        }
        return nil
    }

    /// The analytic gradient agrees with the finite differences, and its negation does not
    /// (so the check can fail: the gradient is not ~0 everywhere and the tolerance is tight).
    static func expectGradient(_ analytic: [Float], _ numeric: [Double], _ label: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        let mismatch = gradientMismatch(analytic, numeric)
        #expect(mismatch == nil, "\(label): \(mismatch ?? "")", sourceLocation: sourceLocation)
        #expect(gradientMismatch(analytic.map { -$0 }, numeric) != nil,
                "\(label): a negated gradient would pass too", sourceLocation: sourceLocation)
    }

    @Test("m2k_ref_sgemm_dx, m2k_ref_sgemm_dw are the gradients of m2k_ref_gemm")
    func linearGradients() {
        let (m, n, kdim) = (4, 5, 7)
        let x = randomFloats(m * kdim, in: -1...1, seed: 50_000)
        let w = randomFloats(n * kdim, in: -1...1, seed: 50_001) // (out = n, in = kdim)
        let b = randomFloats(n, in: -1...1, seed: 50_002)
        let r = randomFloats(m * n, in: -1...1, seed: 50_003)
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            var y = [Float](repeating: 0, count: m * n)
            m2k_ref_gemm(m, n, kdim, x, kdim, w, kdim, M2K_B_NK, &y, n, b, M2K_ACT_NONE, 0)
            return Self.dot(y, r)
        }
        var dx = [Float](repeating: 0, count: m * kdim)
        m2k_ref_sgemm_dx(m, n, kdim, r, n, w, kdim, &dx, kdim, 0)
        var dw = [Float](repeating: 0, count: n * kdim), db = [Float](repeating: 0, count: n)
        m2k_ref_sgemm_dw(m, n, kdim, r, n, x, kdim, &dw, &db)
        Self.expectGradient(dx, Self.numericGradient(x) { loss($0, w, b) }, "sgemm dx")
        Self.expectGradient(dw, Self.numericGradient(w) { loss(x, $0, b) }, "sgemm dW")
        Self.expectGradient(db, Self.numericGradient(b) { loss(x, w, $0) }, "sgemm db")
    }

    @Test("m2k_ref_layernorm_backward is the gradient of m2k_ref_layernorm")
    func layerNormGradients() {
        let (rows, cols) = (3, 11)
        let x = randomFloats(rows * cols, in: -2...2, seed: 51_000)
        let gamma = randomFloats(cols, in: 0.5...1.5, seed: 51_001)
        let beta = randomFloats(cols, in: -0.5...0.5, seed: 51_002)
        let r = randomFloats(rows * cols, in: -1...1, seed: 51_003)
        let eps: Float = 1e-5
        func loss(_ x: [Float], _ gamma: [Float], _ beta: [Float]) -> Double {
            var y = [Float](repeating: 0, count: rows * cols)
            m2k_ref_layernorm(x, &y, gamma, beta, rows, cols, cols, cols, eps)
            return Self.dot(y, r)
        }
        var dx = [Float](repeating: 0, count: rows * cols)
        var dgamma = [Float](repeating: 0, count: cols), dbeta = dgamma
        m2k_ref_layernorm_backward(x, cols, r, cols, gamma, &dx, cols, &dgamma, &dbeta, rows,
                                   cols, eps, 0)
        Self.expectGradient(dx, Self.numericGradient(x) { loss($0, gamma, beta) }, "layernorm dx")
        Self.expectGradient(dgamma, Self.numericGradient(gamma) { loss(x, $0, beta) },
                            "layernorm dγ")
        Self.expectGradient(dbeta, Self.numericGradient(beta) { loss(x, gamma, $0) },
                            "layernorm dβ")
    }

    @Test("m2k_ref_activation_backward is the derivative of quickgelu, gelu and identity")
    func activationGradients() {
        // Both sides of the minimum of each activation and out into its flat tails.
        let x = (0..<97).map { Float($0 - 48) / 8 } // [-6, 6] in steps of 1/8
        let r = randomFloats(x.count, in: -1...1, seed: 52_000)
        let forwards: [(m2k_activation, String, ((UnsafeMutablePointer<Float>, Int) -> Void)?)] = [
            (M2K_ACT_NONE, "none", nil),
            (M2K_ACT_QUICKGELU, "quickgelu", { m2k_ref_quickgelu($0, $1) }),
            (M2K_ACT_GELU, "gelu", { m2k_ref_gelu($0, $1) }),
        ]
        for (act, name, forward) in forwards {
            func loss(_ v: [Float]) -> Double {
                var y = v
                if let forward {
                    y.withUnsafeMutableBufferPointer { forward($0.baseAddress!, $0.count) }
                }
                return Self.dot(y, r)
            }
            var dx = [Float](repeating: 0, count: x.count)
            m2k_ref_activation_backward(act, x, r, &dx, x.count)
            Self.expectGradient(dx, Self.numericGradient(x, loss), "activation \(name)")
        }
    }

    @Test("m2k_ref_attention_backward is the gradient of m2k_ref_attention",
          arguments: [false, true])
    func attentionGradients(_ causal: Bool) {
        let (seqs, tokens, heads, headDim) = (2, 5, 2, 4)
        let width = heads * headDim, ldQKV = 3 * width
        let qkv = randomFloats(seqs * tokens * ldQKV, in: -1.5...1.5, seed: 53_000)
        let r = randomFloats(seqs * tokens * width, in: -1...1, seed: 53_001)
        for queries in [tokens, 2] {
            // Only the first `queries` output rows of each sequence enter the loss.
            var rq = r
            for s in 0..<seqs {
                for i in queries..<tokens {
                    for c in 0..<width { rq[(s * tokens + i) * width + c] = 0 }
                }
            }
            func loss(_ v: [Float]) -> Double {
                var out = [Float](repeating: 0, count: seqs * tokens * width)
                m2k_ref_attention(seqs, tokens, Int32(heads), Int32(headDim), v, ldQKV, &out,
                                  width, causal ? 1 : 0)
                return Self.dot(out, rq)
            }
            // dout: (seqs, queries, width), the loss's weights of the rows that count.
            var dout = [Float]()
            for s in 0..<seqs {
                dout += rq[(s * tokens * width)..<((s * tokens + queries) * width)]
            }
            var dqkv = [Float](repeating: 0, count: qkv.count)
            m2k_ref_attention_backward(seqs, tokens, queries, Int32(heads), Int32(headDim), qkv,
                                       ldQKV, dout, width, &dqkv, ldQKV, causal ? 1 : 0)
            Self.expectGradient(dqkv, Self.numericGradient(qkv, loss),
                                "attention causal \(causal) queries \(queries)")
        }
    }

    @Test("m2k_ref_temporal_dwconv3_backward is the gradient of m2k_temporal_dwconv3")
    func temporalGradients() {
        let (clips, frames, tokens, channels) = (2, 4, 2, 3)
        let count = clips * frames * tokens * channels
        let x = randomFloats(count, in: -1...1, seed: 54_000)
        let w = randomFloats(3 * channels, in: -1...1, seed: 54_001)
        let b = randomFloats(channels, in: -1...1, seed: 54_002)
        let r = randomFloats(count, in: -1...1, seed: 54_003)
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            var y = [Float](repeating: 0, count: count)
            m2k_temporal_dwconv3(nil, x, &y, clips, frames, tokens, channels, w, b)
            return Self.dot(y, r)
        }
        var dx = [Float](repeating: 0, count: count)
        var dw = [Float](repeating: 0, count: 3 * channels)
        var db = [Float](repeating: 0, count: channels)
        m2k_ref_temporal_dwconv3_backward(x, r, &dx, clips, frames, tokens, channels, w, &dw, &db)
        Self.expectGradient(dx, Self.numericGradient(x) { loss($0, w, b) }, "temporal dx")
        Self.expectGradient(dw, Self.numericGradient(w) { loss(x, $0, b) }, "temporal dw")
        Self.expectGradient(db, Self.numericGradient(b) { loss(x, w, $0) }, "temporal dbias")
    }

    @Test("m2k_ref_spatial_dwconv3x3_backward is the gradient of m2k_spatial_dwconv3x3")
    func spatialGradients() {
        let (frames, height, width, channels) = (2, 3, 4, 2)
        let count = frames * height * width * channels
        let x = randomFloats(count, in: -1...1, seed: 55_000)
        let w = randomFloats(9 * channels, in: -1...1, seed: 55_001)
        let b = randomFloats(channels, in: -1...1, seed: 55_002)
        let r = randomFloats(count, in: -1...1, seed: 55_003)
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            var y = [Float](repeating: 0, count: count)
            m2k_spatial_dwconv3x3(nil, x, &y, frames, height, width, channels, w, b)
            return Self.dot(y, r)
        }
        var dx = [Float](repeating: 0, count: count)
        var dw = [Float](repeating: 0, count: 9 * channels)
        var db = [Float](repeating: 0, count: channels)
        m2k_ref_spatial_dwconv3x3_backward(x, r, &dx, frames, height, width, channels, w, &dw,
                                           &db)
        Self.expectGradient(dx, Self.numericGradient(x) { loss($0, w, b) }, "spatial dx")
        Self.expectGradient(dw, Self.numericGradient(w) { loss(x, $0, b) }, "spatial dw")
        Self.expectGradient(db, Self.numericGradient(b) { loss(x, w, $0) }, "spatial dbias")
    }
}
