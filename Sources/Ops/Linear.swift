import CKernels

/// What runs after a GEMM, fused into its epilogue.
public enum Activation: Sendable {
    case none, quickGELU, gelu

    var cValue: m2k_activation {
        switch self {
        case .none: return M2K_ACT_NONE
        case .quickGELU: return M2K_ACT_QUICKGELU
        case .gelu: return M2K_ACT_GELU
        }
    }
}

/// A linear layer y = x · Wᵀ + b with W packed once, at load, for the context's kernels:
/// fp32 panels for the fp32 GEMM, or int8 with per-channel scales for the int8 GEMM
/// (activations quantized per row inside the op; see kernels.h).
public final class Linear: @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    /// fp32 panels, or the int8 blob of m2k_q8_pack.
    let packed: UnsafeMutableRawPointer
    let bias: Tensor?
    let nr: Int32
    /// The kernel table the weights were packed for.
    let kernels: UnsafePointer<m2k_kernels>
    public let precision: Precision

    /// How the weights are stored and multiplied.
    public enum Precision: String, Codable, Sendable {
        case fp32, int8
    }

    /// How a weight matrix is laid out in the checkpoint.
    public enum WeightLayout: Sendable {
        /// (out, in), as PyTorch `nn.Linear` and Hugging Face store it.
        case outIn
        /// (in, out), as OpenAI CLIP's `proj` and `text_projection`.
        case inOut
    }

    /// - Parameters:
    ///   - weight: `outFeatures × inFeatures` values in `layout` order.
    ///   - bias: `outFeatures` values, or nil.
    public init(weight: [Float], bias: [Float]?, inFeatures: Int, outFeatures: Int,
                layout: WeightLayout = .outIn, context: ComputeContext) {
        precondition(weight.count == inFeatures * outFeatures, "weight size mismatch")
        precondition(bias == nil || bias!.count == outFeatures, "bias size mismatch")
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        kernels = context.kernels
        precision = .fp32
        let nr = context.kernels.pointee.nr
        self.nr = nr
        let floats = m2k_packed_b_floats(nr, outFeatures, inFeatures)
        guard let raw = m2k_alloc(max(floats, 1) * MemoryLayout<Float>.stride) else {
            fatalError("out of memory packing a \(outFeatures)×\(inFeatures) weight")
        }
        let packed = raw.bindMemory(to: Float.self, capacity: max(floats, 1))
        self.packed = UnsafeMutableRawPointer(packed)
        weight.withUnsafeBufferPointer { w in
            switch layout {
            case .outIn:
                m2k_pack_b(nr, outFeatures, inFeatures, w.baseAddress, inFeatures, M2K_B_NK, packed)
            case .inOut:
                m2k_pack_b(nr, outFeatures, inFeatures, w.baseAddress, outFeatures, M2K_B_KN, packed)
            }
        }
        self.bias = bias.map { Tensor(shape: [outFeatures], values: $0) }
    }

    /// An int8 layer from weights already quantized per output channel (symmetric).
    /// - Parameters:
    ///   - quantized: `outFeatures × inFeatures` int8 values, (out, in).
    ///   - scales: `outFeatures` scales: W ≈ quantized · scale.
    public init(quantized: [Int8], scales: [Float], bias: [Float]?, inFeatures: Int, outFeatures: Int,
                context: ComputeContext) {
        precondition(quantized.count == inFeatures * outFeatures && scales.count == outFeatures,
                     "int8 weight size mismatch")
        precondition(bias == nil || bias!.count == outFeatures, "bias size mismatch")
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        kernels = context.kernels
        precision = .int8
        nr = context.kernels.pointee.nr
        let bytes = m2k_q8_packed_bytes(context.kernels, outFeatures, inFeatures)
        guard let raw = m2k_alloc(max(bytes, 64)) else {
            fatalError("out of memory packing a \(outFeatures)×\(inFeatures) int8 weight")
        }
        packed = raw
        quantized.withUnsafeBufferPointer { q in
            scales.withUnsafeBufferPointer { m2k_q8_pack(context.kernels, outFeatures, inFeatures, q.baseAddress, $0.baseAddress, raw) }
        }
        self.bias = bias.map { Tensor(shape: [outFeatures], values: $0) }
    }

    /// Quantizes fp32 weights (out, in) per output channel: what `m2clip quantize` stores.
    public static func quantize(weight: [Float], inFeatures: Int, outFeatures: Int) -> (values: [Int8], scales: [Float]) {
        var q = [Int8](repeating: 0, count: weight.count)
        var scales = [Float](repeating: 0, count: outFeatures)
        weight.withUnsafeBufferPointer { w in
            q.withUnsafeMutableBufferPointer { qb in
                scales.withUnsafeMutableBufferPointer {
                    m2k_q8_quantize_weights(w.baseAddress, outFeatures, inFeatures, qb.baseAddress, $0.baseAddress)
                }
            }
        }
        return (q, scales)
    }

    deinit { m2k_free(packed) }

    /// y(rows, out) = activation(x(rows, in) · Wᵀ + b), or y += x · Wᵀ + b when `accumulate`
    /// (a fused residual add; then `activation` must be `.none`).
    public func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, ldx: Int? = nil,
                               into y: UnsafeMutablePointer<Float>, ldy: Int? = nil,
                               activation: Activation = .none, accumulate: Bool = false,
                               context: ComputeContext) {
        precondition(context.kernels == kernels, "weights packed for another kernel variant")
        precondition(!accumulate || activation == .none, "accumulate takes no activation")
        switch precision {
        case .fp32:
            m2k_sgemm(context.kernels, context.pool, rows, outFeatures, inFeatures, x,
                      ldx ?? inFeatures, packed.assumingMemoryBound(to: Float.self), y, ldy ?? outFeatures,
                      bias?.data, activation.cValue, accumulate ? 1 : 0)
        case .int8:
            m2k_q8_gemm(context.kernels, context.pool, rows, outFeatures, inFeatures, x,
                        ldx ?? inFeatures, packed, y, ldy ?? outFeatures, bias?.data,
                        activation.cValue, accumulate ? 1 : 0)
        }
    }
}
