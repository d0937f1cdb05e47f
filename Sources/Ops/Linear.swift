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

/// A linear layer y = x · Wᵀ + b with W packed once, at load, into the panels of the
/// context's GEMM micro-kernel.
public final class Linear: @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    let packed: UnsafeMutablePointer<Float>
    let bias: Tensor?
    let nr: Int32

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
        let nr = context.kernels.pointee.nr
        self.nr = nr
        let floats = m2k_packed_b_floats(nr, outFeatures, inFeatures)
        guard let raw = m2k_alloc(max(floats, 1) * MemoryLayout<Float>.stride) else {
            fatalError("out of memory packing a \(outFeatures)×\(inFeatures) weight")
        }
        let packed = raw.bindMemory(to: Float.self, capacity: max(floats, 1))
        self.packed = packed
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

    deinit { m2k_free(packed) }

    /// y(rows, out) = activation(x(rows, in) · Wᵀ + b), or y += x · Wᵀ + b when `accumulate`
    /// (a fused residual add; then `activation` must be `.none`).
    public func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, ldx: Int? = nil,
                               into y: UnsafeMutablePointer<Float>, ldy: Int? = nil,
                               activation: Activation = .none, accumulate: Bool = false,
                               context: ComputeContext) {
        precondition(context.kernels.pointee.nr == nr, "weights packed for another kernel variant")
        precondition(!accumulate || activation == .none, "accumulate takes no activation")
        m2k_sgemm(context.kernels, context.pool, rows, outFeatures, inFeatures, x,
                  ldx ?? inFeatures, packed, y, ldy ?? outFeatures, bias?.data,
                  activation.cValue, accumulate ? 1 : 0)
    }
}
