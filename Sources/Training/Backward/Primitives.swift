import CKernels
import M2Model
import Ops

/// Gradient buffers of one trainable Linear layer, in PyTorch's (out, in) layout.
final class LinearGradient: @unchecked Sendable {
    let layer: Linear  // the parameters
    let weight: Tensor // (out, in)
    let bias: Tensor?  // (out)

    init(_ layer: Linear, bias: Bool = true) {
        self.layer = layer
        weight = Tensor(shape: [layer.outFeatures, layer.inFeatures])
        self.bias = bias && layer.bias != nil ? Tensor(shape: [layer.outFeatures]) : nil
    }
}

/// Gradient buffers of one depthwise convolution, in the kernels' (taps, C) layout.
final class ConvGradient: @unchecked Sendable {
    let conv: DepthwiseWeights // the parameters
    let weight: Tensor // (taps, C)
    let bias: Tensor   // (C)

    init(_ conv: DepthwiseWeights) {
        self.conv = conv
        weight = Tensor(shape: [conv.taps, conv.channels])
        bias = Tensor(shape: [conv.channels])
    }
}

/// Gradient buffers of a trainable LayerNorm.
final class LayerNormGradient: @unchecked Sendable {
    let norm: LayerNorm // the parameters
    let weight: Tensor
    let bias: Tensor

    init(_ norm: LayerNorm) {
        self.norm = norm
        weight = Tensor(shape: [norm.weight.count])
        bias = Tensor(shape: [norm.bias.count])
    }
}

extension Linear {
    /// Forward: y = x · Wᵀ + b (see `callAsFunction`).
    /// Backward, input: dx(rows, in) = [dx +] dy(rows, out) · W, through the packed fp32
    /// panels the forward uses (frozen and trainable layers alike).
    func backwardInput(_ dy: UnsafePointer<Float>, rows: Int, lddy: Int? = nil,
                       into dx: UnsafeMutablePointer<Float>, lddx: Int? = nil, accumulate: Bool,
                       context: ComputeContext) {
        precondition(precision == .fp32, "backward runs on fp32 weights")
        guard rows > 0 else { return }
        m2k_sgemm_dx(context.kernels, context.pool, rows, outFeatures, inFeatures, dy, lddy ?? outFeatures,
                     packed.assumingMemoryBound(to: Float.self), dx, lddx ?? inFeatures, accumulate ? 1 : 0)
    }

    /// Backward, weights: dW += dyᵀ · x, db += Σ_rows dy.
    func backwardWeights(_ dy: UnsafePointer<Float>, rows: Int, lddy: Int? = nil, input x: UnsafePointer<Float>,
                         ldx: Int? = nil, into gradient: LinearGradient, context: ComputeContext) {
        guard rows > 0 else { return }
        m2k_sgemm_dw(context.kernels, context.pool, rows, outFeatures, inFeatures, dy, lddy ?? outFeatures, x,
                     ldx ?? inFeatures, gradient.weight.data, gradient.bias?.data)
    }
}

extension LayerNorm {
    /// Forward: y = (x − mean) / sqrt(var + eps) · γ + β per row.
    /// Backward: dx = [dx +] ∂L/∂x from the forward's input x; dγ, dβ += when trainable.
    func backward(input x: UnsafePointer<Float>, rows: Int, ldx: Int? = nil, dy: UnsafePointer<Float>,
                  lddy: Int? = nil, into dx: UnsafeMutablePointer<Float>, lddx: Int? = nil, accumulate: Bool,
                  gradient: LayerNormGradient? = nil, context: ComputeContext) {
        guard rows > 0 else { return }
        m2k_layernorm_backward_rows(context.kernels, context.pool, x, ldx ?? width, dy, lddy ?? width,
                                    weight.data, dx, lddx ?? width, gradient?.weight.data, gradient?.bias.data,
                                    rows, width, epsilon, accumulate ? 1 : 0)
    }
}

enum Elementwise {
    /// Forward: y = act(x). Backward: dx = dy · act'(x) (dx may be dy).
    static func activationBackward(_ activation: Activation, input x: UnsafePointer<Float>,
                                   dy: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, count: Int,
                                   context: ComputeContext) {
        let act: m2k_activation = switch activation {
        case .none: M2K_ACT_NONE
        case .quickGELU: M2K_ACT_QUICKGELU
        case .gelu: M2K_ACT_GELU
        }
        m2k_activation_backward(context.kernels, context.pool, act, x, dy, dx, count)
    }

    /// y(rows, width) = act(x) as a separate pass (the forward keeps x for the backward),
    /// with the forward kernels' own epilogue.
    static func activation(_ activation: Activation, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                           rows: Int, width: Int, context: ComputeContext) {
        y.update(from: x, count: rows * width)
        guard activation != .none, rows > 0 else { return }
        let act: m2k_activation = activation == .gelu ? M2K_ACT_GELU : M2K_ACT_QUICKGELU
        context.kernels.pointee.bias_act(y, width, Int32(rows), Int32(width), nil, act)
    }

    /// Copies `rows` rows of `width` from strided x to strided y.
    static func copyRows(_ x: UnsafePointer<Float>, ldx: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
                         rows: Int, width: Int) {
        for r in 0..<rows { (y + r * ldy).update(from: x + r * ldx, count: width) }
    }
}

extension Tensor {
    /// A tensor holding a copy of `count` values at `source`.
    convenience init(shape: [Int], copying source: UnsafePointer<Float>) {
        self.init(shape: shape)
        data.update(from: source, count: count)
    }

    func zero() { data.update(repeating: 0, count: count) }
}
