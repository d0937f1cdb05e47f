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
/// fp32 panels for the fp32 GEMM, the same panels in fp16 or bf16 (widened to fp32 inside the
/// GEMM, summed in fp32), or int8 with per-channel scales for the int8 GEMM (activations
/// quantized per row inside the op; see kernels.h).
public final class Linear: @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    /// fp32 panels, fp16 or bf16 panels, or the int8 blob of m2k_q8_pack.
    package let packed: UnsafeMutableRawPointer
    /// Bytes the packed weights take (panel padding and the int8 header included).
    public let packedBytes: Int
    package let bias: Tensor?
    let nr: Int32
    /// The kernel table the weights were packed for.
    let kernels: UnsafePointer<m2k_kernels>
    public let precision: Precision

    /// How the weights are stored and multiplied.
    public enum Precision: String, Codable, Sendable {
        case fp32, fp16, bf16, int8

        /// Bytes one weight takes in the packed panels (int8: not panels; see m2k_q8_pack).
        var panelElementBytes: Int {
            switch self {
            case .fp16, .bf16: return MemoryLayout<UInt16>.stride
            case .fp32, .int8: return MemoryLayout<Float>.stride
            }
        }
    }

    /// How a weight matrix is laid out in the checkpoint.
    public enum WeightLayout: Sendable {
        /// (out, in), as PyTorch `nn.Linear` and Hugging Face store it.
        case outIn
        /// (in, out), as OpenAI CLIP's `proj` and `text_projection`.
        case inOut

        /// The row stride of the stored matrix and its m2k_pack_b layout.
        func strideAndLayout(inFeatures: Int, outFeatures: Int) -> (Int, m2k_b_layout) {
            switch self {
            case .outIn: return (inFeatures, M2K_B_NK)
            case .inOut: return (outFeatures, M2K_B_KN)
            }
        }
    }

    /// - Parameters:
    ///   - weight: `outFeatures × inFeatures` values in `layout` order.
    ///   - bias: `outFeatures` values, or nil.
    public convenience init(weight: [Float], bias: [Float]?, inFeatures: Int, outFeatures: Int,
                            layout: WeightLayout = .outIn, context: ComputeContext) {
        precondition(weight.count == inFeatures * outFeatures, "weight size mismatch")
        self.init(panelsOf: .fp32, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures,
                  context: context) { nr, raw, count in
            let (ldw, cLayout) = layout.strideAndLayout(inFeatures: inFeatures, outFeatures: outFeatures)
            weight.withUnsafeBufferPointer {
                m2k_pack_b(nr, outFeatures, inFeatures, $0.baseAddress, ldw, cLayout,
                           raw.bindMemory(to: Float.self, capacity: count))
            }
        }
    }

    /// The fp32 weights (out, in) read back from the panels: W[j, k] sits at
    /// panels[((j / nr) · in + k) · nr + j % nr] (m2k_pack_b's layout).
    package func fp32Weights() -> [Float] {
        precondition(precision == .fp32, "only fp32 panels read back exactly")
        let nr = Int(self.nr), panels = packed.assumingMemoryBound(to: Float.self)
        var w = [Float](repeating: 0, count: outFeatures * inFeatures)
        for j in 0..<outFeatures {
            let base = (j / nr) * inFeatures * nr + j % nr
            for k in 0..<inFeatures { w[j * inFeatures + k] = panels[base + k * nr] }
        }
        return w
    }

    /// Replaces the fp32 weights with `weight` (out, in), repacked in place: what a training
    /// step's update does to a trainable layer.
    package func setFP32Weights(_ weight: [Float]) {
        precondition(precision == .fp32 && weight.count == inFeatures * outFeatures, "fp32 weight size mismatch")
        weight.withUnsafeBufferPointer {
            m2k_pack_b(nr, outFeatures, inFeatures, $0.baseAddress, inFeatures, M2K_B_NK,
                       packed.assumingMemoryBound(to: Float.self))
        }
    }

    /// An fp16 layer: W kept as fp16 in memory (half of fp32's bytes) and widened to fp32
    /// inside the GEMM, a block at a time; products and sums are fp32.
    /// - Parameters:
    ///   - halfWeight: `outFeatures × inFeatures` IEEE binary16 bit patterns in `layout` order.
    ///   - bias: `outFeatures` values, or nil.
    public convenience init(halfWeight: [UInt16], bias: [Float]?, inFeatures: Int, outFeatures: Int,
                            layout: WeightLayout = .outIn, context: ComputeContext) {
        self.init(bits: halfWeight, precision: .fp16, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures,
                  layout: layout, context: context)
    }

    /// A bf16 layer: W kept as bfloat16 in memory (half of fp32's bytes, fp32's exponent range)
    /// and widened to fp32 inside the GEMM, a block at a time (a 16-bit shift: exact);
    /// products and sums are fp32.
    /// - Parameters:
    ///   - bfloat16Weight: `outFeatures × inFeatures` bfloat16 bit patterns in `layout` order.
    ///   - bias: `outFeatures` values, or nil.
    public convenience init(bfloat16Weight: [UInt16], bias: [Float]?, inFeatures: Int, outFeatures: Int,
                            layout: WeightLayout = .outIn, context: ComputeContext) {
        self.init(bits: bfloat16Weight, precision: .bf16, bias: bias, inFeatures: inFeatures,
                  outFeatures: outFeatures, layout: layout, context: context)
    }

    /// fp16 or bf16 bit patterns packed by that format's m2k_pack_b_*_bits.
    private convenience init(bits: [UInt16], precision: Precision, bias: [Float]?, inFeatures: Int,
                             outFeatures: Int, layout: WeightLayout, context: ComputeContext) {
        precondition(bits.count == inFeatures * outFeatures, "\(precision) weight size mismatch")
        let packBits = precision == .bf16 ? m2k_pack_b_bf16_bits : m2k_pack_b_f16_bits
        self.init(panelsOf: precision, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures,
                  context: context) { nr, raw, count in
            let (ldw, cLayout) = layout.strideAndLayout(inFeatures: inFeatures, outFeatures: outFeatures)
            bits.withUnsafeBufferPointer {
                packBits(nr, outFeatures, inFeatures, $0.baseAddress, ldw, cLayout,
                         raw.bindMemory(to: UInt16.self, capacity: count))
            }
        }
    }

    /// fp32, fp16 or bf16 nr-wide panels (m2k_packed_b_floats elements), filled by `pack(nr, memory,
    /// elements)`.
    private init(panelsOf precision: Precision, bias: [Float]?, inFeatures: Int, outFeatures: Int,
                 context: ComputeContext, pack: (Int32, UnsafeMutableRawPointer, Int) -> Void) {
        precondition(bias == nil || bias!.count == outFeatures, "bias size mismatch")
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        kernels = context.kernels
        self.precision = precision
        let nr = context.kernels.pointee.nr
        self.nr = nr
        let count = m2k_packed_b_floats(nr, outFeatures, inFeatures)
        packedBytes = count * precision.panelElementBytes
        guard let raw = m2k_alloc(max(packedBytes, 64)) else {
            fatalError("out of memory packing a \(outFeatures)×\(inFeatures) \(precision) weight")
        }
        packed = raw
        pack(nr, raw, max(count, 1))
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
        packedBytes = bytes
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
        case .fp16:
            m2k_sgemm_f16b(context.kernels, context.pool, rows, outFeatures, inFeatures, x,
                           ldx ?? inFeatures, packed.assumingMemoryBound(to: UInt16.self), y,
                           ldy ?? outFeatures, bias?.data, activation.cValue, accumulate ? 1 : 0)
        case .bf16:
            m2k_sgemm_bf16b(context.kernels, context.pool, rows, outFeatures, inFeatures, x,
                            ldx ?? inFeatures, packed.assumingMemoryBound(to: UInt16.self), y,
                            ldy ?? outFeatures, bias?.data, activation.cValue, accumulate ? 1 : 0)
        case .int8:
            m2k_q8_gemm(context.kernels, context.pool, rows, outFeatures, inFeatures, x,
                        ldx ?? inFeatures, packed, y, ldy ?? outFeatures, bias?.data,
                        activation.cValue, accumulate ? 1 : 0)
        }
    }
}
