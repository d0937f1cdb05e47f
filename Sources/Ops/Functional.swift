import CKernels

/// LayerNorm over the last dimension.
public struct LayerNorm: Sendable {
    public let weight: Tensor
    public let bias: Tensor
    public let epsilon: Float

    public init(weight: [Float], bias: [Float], epsilon: Float) {
        precondition(weight.count == bias.count, "LayerNorm weight/bias size mismatch")
        self.weight = Tensor(shape: [weight.count], values: weight)
        self.bias = Tensor(shape: [bias.count], values: bias)
        self.epsilon = epsilon
    }

    public var width: Int { weight.count }

    /// y(rows, width) = LN(x(rows, width)); x and y may be the same buffer.
    public func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, ldx: Int? = nil,
                               into y: UnsafeMutablePointer<Float>, ldy: Int? = nil,
                               context: ComputeContext) {
        m2k_layernorm_rows(context.kernels, context.pool, x, y, weight.data, bias.data, rows, width,
                           ldx ?? width, ldy ?? width, epsilon)
    }
}

public enum Functional {
    /// Multi-head self-attention for `sequences` independent sequences.
    /// - Parameters:
    ///   - qkv: (sequences, tokens, 3 · heads · headDim), Q | K | V per token.
    ///   - queries: how many leading tokens of each sequence to attend from (nil: all).
    ///   - out: (sequences, queries, heads · headDim).
    public static func attention(qkv: UnsafePointer<Float>, sequences: Int, tokens: Int,
                                 queries: Int? = nil, heads: Int, headDim: Int, causal: Bool,
                                 into out: UnsafeMutablePointer<Float>, context: ComputeContext) {
        let width = heads * headDim
        m2k_attention_queries(context.kernels, context.pool, sequences, tokens, queries ?? tokens,
                              Int32(heads), Int32(headDim), qkv, 3 * width, out, width,
                              causal ? 1 : 0)
    }

    /// y += x over `count` values.
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                           count: Int, context: ComputeContext) {
        context.kernels.pointee.add(y, x, count)
    }
}
