import CKernels
import Testing

/// m2k_sgemm — B packing, every variant's micro-kernels (packed A and A read in place),
/// edge tiles, K blocking, M blocking (M > 192), N chunks, the bias/activation epilogue,
/// accumulate — against m2k_ref_gemm, and m2k_attention / m2k_attention_queries against
/// m2k_ref_attention, each on a 2-thread pool and with no pool.
@Suite("GEMM and attention match the reference")
struct GemmAttentionTests {
    /// GEMM: within 1e-5 of max(1, the row's largest |C|); fp32 sums of up to 520 products
    /// against the reference's double sum.
    static let gemmTolerance = Tolerance.row(1e-5)
    /// Attention: the same bound on each output row (two GEMMs and a softmax).
    static let attentionTolerance = Tolerance.row(1e-5)

    /// (M, N, K): one element; odd sizes everywhere; exactly one AVX2 (6×16) and one
    /// AVX-512 (12×32) tile; K = 0 (C = act(bias)); K over one, two and three K blocks
    /// (gemm.c's KC is a few hundred); M blocking; several N chunks; M and K blocking together.
    static let gemmShapes = [
        (1, 1, 1), (13, 37, 29), (6, 16, 16), (12, 32, 32), (5, 3, 0), (7, 45, 300),
        (9, 20, 777), (200, 40, 33), (25, 300, 70), (197, 33, 520),
    ]


    /// B packed for `k`'s panel width into 64-byte aligned memory, as the micro-kernels'
    /// aligned loads need. Release with m2k_free.
    static func packB(_ b: StridedMatrix, layout: m2k_b_layout, n: Int, kdim: Int,
                      for k: UnsafePointer<m2k_kernels>) -> UnsafeMutablePointer<Float> {
        let floats = m2k_packed_b_floats(k.pointee.nr, n, kdim)
        let packed = m2k_alloc(floats * MemoryLayout<Float>.size)!
            .bindMemory(to: Float.self, capacity: floats)
        m2k_pack_b(k.pointee.nr, n, kdim, b.storage, b.ld, layout, packed)
        return packed
    }

    @Test("m2k_pack_b lays out nr-wide K-major panels, zero padded")
    func packing() {
        let (n, kdim) = (37, 11)
        let bNK = StridedMatrix(rows: n, cols: kdim, ld: kdim + 2, in: -1...1, seed: 3)
        let bKN = StridedMatrix(rows: kdim, cols: n, ld: n + 1) { bNK[$1, $0] }
        for k in availableVariants() {
            let nr = Int(k.pointee.nr)
            let panels = (n + nr - 1) / nr
            #expect(m2k_packed_b_floats(k.pointee.nr, n, kdim) == panels * kdim * nr)
            for (b, layout, name) in [(bNK, M2K_B_NK, "NK"), (bKN, M2K_B_KN, "KN")] {
                let packed = Self.packB(b, layout: layout, n: n, kdim: kdim, for: k)
                defer { m2k_free(packed) }
                var mismatch: String?
                for p in 0..<panels {
                    for kk in 0..<kdim {
                        for j in 0..<nr where mismatch == nil {
                            let col = p * nr + j
                            let want = col < n ? bNK[col, kk] : 0
                            let got = packed[(p * kdim + kk) * nr + j]
                            if got != want {
                                mismatch = "panel \(p), k \(kk), lane \(j): "
                                    + "got \(got), want \(want)"
                            }
                        }
                    }
                }
                #expect(mismatch == nil,
                        "pack_b [\(k.name)] \(name) \(n)×\(kdim): \(mismatch ?? "")")
            }
        }
    }

    @Test("m2k_sgemm, both B layouts, every epilogue, pool and no pool",
          arguments: gemmShapes.indices)
    func sgemm(_ index: Int) throws {
        let (m, n, kdim) = Self.gemmShapes[index]
        let seed = 10_000 + UInt64(index) * 10
        let a = StridedMatrix(rows: m, cols: kdim, ld: kdim + 2, in: -1...1, seed: seed)
        let bias = randomFloats(n, in: -1...1, seed: seed + 1)
        let c0 = StridedMatrix(rows: m, cols: n, ld: n + 3, in: -1...1, seed: seed + 2)
        // B as a PyTorch Linear weight (N, K), and the same matrix stored (K, N).
        let bNK = StridedMatrix(rows: n, cols: kdim, ld: kdim + 1, in: -1...1, seed: seed + 3)
        let bKN = StridedMatrix(rows: kdim, cols: n, ld: n + 1) { bNK[$1, $0] }

        try withPool(threads: 2) { pool in
            let layouts = [(bNK, M2K_B_NK, "B (N,K)"), (bKN, M2K_B_KN, "B (K,N)")]
            for (b, layout, layoutName) in layouts {
                for (withBias, act, accumulate, epilogue) in gemmEpilogues {
                    var want = c0
                    withOptionalPointer(withBias ? bias : nil) { biasPointer in
                        m2k_ref_gemm(m, n, kdim, a.storage, a.ld, b.storage, b.ld, layout,
                                     &want.storage, want.ld, biasPointer, act, accumulate ? 1 : 0)
                    }
                    for k in availableVariants() {
                        let packed = Self.packB(b, layout: layout, n: n, kdim: kdim, for: k)
                        defer { m2k_free(packed) }
                        for (p, poolName) in [(pool, "2 threads"), (nil, "no pool")] {
                            var c = c0
                            withOptionalPointer(withBias ? bias : nil) { biasPointer in
                                m2k_sgemm(k, p, m, n, kdim, a.storage, a.ld, packed, &c.storage,
                                          c.ld, biasPointer, act, accumulate ? 1 : 0)
                            }
                            let detail = "\(m)×\(n)×\(kdim) \(layoutName) \(epilogue) \(poolName)"
                            expectClose(c, want, Self.gemmTolerance, kernel: "sgemm",
                                        variant: k.name, detail: detail)
                        }
                    }
                }
            }
        }
    }

    /// (sequences, tokens, heads, head_dim): a tiny odd head; ViT-B/16's 197 tokens with
    /// 64-wide heads; more heads and sequences than tasks fit in one go; a single head.
    static let attentionShapes = [(2, 5, 3, 8), (1, 197, 2, 64), (3, 17, 4, 64), (2, 33, 1, 8)]

    @Test("m2k_attention and m2k_attention_queries, causal and not, pool and no pool",
          arguments: attentionShapes.indices)
    func attention(_ index: Int) throws {
        let (seqs, tokens, heads, headDim) = Self.attentionShapes[index]
        let width = heads * headDim
        // (seqs · tokens, 3 · width): Q, K, V side by side per token.
        let qkv = StridedMatrix(rows: seqs * tokens, cols: 3 * width, ld: 3 * width + 5,
                                in: -2...2, seed: 20_000 + UInt64(index))
        try withPool(threads: 2) { pool in
            for causal in [false, true] {
                // (seqs · tokens, width)
                var want = StridedMatrix(rows: seqs * tokens, cols: width, ld: width + 3) {
                    _, _ in 0
                }
                m2k_ref_attention(seqs, tokens, Int32(heads), Int32(headDim), qkv.storage,
                                  qkv.ld, &want.storage, want.ld, causal ? 1 : 0)
                for k in availableVariants() {
                    for (p, poolName) in [(pool, "2 threads"), (nil, "no pool")] {
                        var out = want.blank()
                        m2k_attention(k, p, seqs, tokens, Int32(heads), Int32(headDim),
                                      qkv.storage, qkv.ld, &out.storage, out.ld, causal ? 1 : 0)
                        let detail = "seqs \(seqs) tokens \(tokens) heads \(heads) "
                            + "head_dim \(headDim) \(causal ? "causal" : "full") \(poolName)"
                        expectClose(out, want, Self.attentionTolerance, kernel: "attention",
                                    variant: k.name, detail: detail)
                    }
                    // Only the first `queries` tokens as queries: out (seqs, queries, width)
                    // holds those rows of the full result. More queries than tokens clamp.
                    for queries in [1, 3, tokens + 2] {
                        let rows = min(queries, tokens)
                        let wantRows = StridedMatrix(rows: seqs * rows, cols: width,
                                                     ld: width + 3) {
                            want[($0 / rows) * tokens + $0 % rows, $1]
                        }
                        var out = wantRows.blank()
                        m2k_attention_queries(k, pool, seqs, tokens, queries, Int32(heads),
                                              Int32(headDim), qkv.storage, qkv.ld, &out.storage,
                                              out.ld, causal ? 1 : 0)
                        let detail = "seqs \(seqs) tokens \(tokens) queries \(queries) "
                            + "heads \(heads) head_dim \(headDim) \(causal ? "causal" : "full")"
                        expectClose(out, wantRows, Self.attentionTolerance,
                                    kernel: "attention_queries", variant: k.name, detail: detail)
                    }
                }
            }
        }
    }
}
