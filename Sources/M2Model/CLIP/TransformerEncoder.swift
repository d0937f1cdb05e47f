import Ops

/// One pre-LN block: x += attn(ln_1(x)); x += mlp(ln_2(x)).
final class EncoderLayer: @unchecked Sendable {
    let layerNorm1: LayerNorm
    let qkv: Linear        // (3d ← d): Q | K | V
    let outProjection: Linear
    let layerNorm2: LayerNorm
    let fc1: Linear
    let fc2: Linear

    init(names: BlockNames, shape: EncoderShape, reader: WeightReader, context: ComputeContext) throws {
        let d = shape.hiddenSize, inner = shape.intermediateSize
        func norm(_ prefix: String) throws -> LayerNorm {
            LayerNorm(weight: try reader.floats(prefix.weight, shape: [d]),
                      bias: try reader.floats(prefix.bias, shape: [d]), epsilon: shape.layerNormEps)
        }
        func linear(_ prefix: String, out: Int, in: Int) throws -> Linear {
            Linear(weight: try reader.floats(prefix.weight, shape: [out, `in`]),
                   bias: try reader.floats(prefix.bias, shape: [out]),
                   inFeatures: `in`, outFeatures: out, context: context)
        }
        layerNorm1 = try norm(names.layerNorm1)
        layerNorm2 = try norm(names.layerNorm2)
        switch names.attention {
        case .separate(let q, let k, let v):
            var weight: [Float] = [], bias: [Float] = []
            for prefix in [q, k, v] {
                weight += try reader.floats(prefix.weight, shape: [d, d])
                bias += try reader.floats(prefix.bias, shape: [d])
            }
            qkv = Linear(weight: weight, bias: bias, inFeatures: d, outFeatures: 3 * d, context: context)
        case .fused(let weight, let bias):
            qkv = Linear(weight: try reader.floats(weight, shape: [3 * d, d]),
                         bias: try reader.floats(bias, shape: [3 * d]),
                         inFeatures: d, outFeatures: 3 * d, context: context)
        }
        outProjection = try linear(names.outProjection, out: d, in: d)
        fc1 = try linear(names.fc1, out: inner, in: d)
        fc2 = try linear(names.fc2, out: d, in: inner)
    }
}

/// Activation buffers for one encoder pass, sized for `rows` tokens.
final class EncoderWorkspace {
    let rows: Int
    let normed: Tensor    // (rows, d)
    let qkv: Tensor       // (rows, 3d)
    let attended: Tensor  // (rows, d)
    let hidden: Tensor    // (rows, intermediate)

    init(rows: Int, shape: EncoderShape) {
        self.rows = rows
        normed = Tensor(shape: [rows, shape.hiddenSize])
        qkv = Tensor(shape: [rows, 3 * shape.hiddenSize])
        attended = Tensor(shape: [rows, shape.hiddenSize])
        hidden = Tensor(shape: [rows, shape.intermediateSize])
    }
}

/// The stack of blocks shared by the image and text towers.
final class TransformerEncoder: @unchecked Sendable {
    let shape: EncoderShape
    let layers: [EncoderLayer]
    let activation: Activation

    init(shape: EncoderShape, names: (Int) -> BlockNames, reader: WeightReader,
         context: ComputeContext) throws {
        self.shape = shape
        activation = shape.activation ?? .quickGELU
        layers = try (0..<shape.layers).map {
            try EncoderLayer(names: names($0), shape: shape, reader: reader, context: context)
        }
    }

    /// Runs every block in place on x: (sequences, tokens, d). Attention stays within a
    /// sequence (a frame of a clip, or one text).
    /// - Parameter firstTokenOnly: the caller reads only token 0 (CLS) of each sequence
    ///   after the last block, so that block attends from CLS only and runs its out_proj
    ///   and MLP on CLS rows only; the other rows of x are then left as they were before
    ///   the last block. The CLS rows are the same as a full pass computes.
    func callAsFunction(_ x: Tensor, sequences: Int, tokens: Int, causal: Bool,
                        firstTokenOnly: Bool = false, context: ComputeContext, times: StageTimes?) {
        let rows = sequences * tokens
        let ws = EncoderWorkspace(rows: rows, shape: shape)
        for (index, layer) in layers.enumerated() {
            if firstTokenOnly && index == layers.count - 1 {
                forwardFirstToken(layer, x, ws, sequences: sequences, tokens: tokens,
                                  causal: causal, context: context, times: times)
            } else {
                forward(layer, x, ws, sequences: sequences, tokens: tokens, causal: causal,
                        context: context, times: times)
            }
        }
    }

    /// The last block when only each sequence's token 0 is read afterwards.
    private func forwardFirstToken(_ layer: EncoderLayer, _ x: Tensor, _ ws: EncoderWorkspace,
                                   sequences: Int, tokens: Int, causal: Bool,
                                   context: ComputeContext, times: StageTimes?) {
        let rows = ws.rows, d = shape.hiddenSize, stride = tokens * d
        times.measure("layernorm") { layer.layerNorm1(x.data, rows: rows, into: ws.normed.data, context: context) }
        times.measure("qkv") { layer.qkv(ws.normed.data, rows: rows, into: ws.qkv.data, context: context) }
        times.measure("attention") {
            Functional.attention(qkv: ws.qkv.data, sequences: sequences, tokens: tokens, queries: 1,
                                 heads: shape.heads, headDim: shape.headDim, causal: causal,
                                 into: ws.attended.data, context: context) // (sequences, d)
        }
        times.measure("out_proj") {
            layer.outProjection(ws.attended.data, rows: sequences, into: x.data, ldy: stride,
                                accumulate: true, context: context)
        }
        times.measure("layernorm") {
            layer.layerNorm2(x.data, rows: sequences, ldx: stride, into: ws.normed.data, context: context)
        }
        times.measure("mlp_fc1") {
            layer.fc1(ws.normed.data, rows: sequences, into: ws.hidden.data, activation: activation, context: context)
        }
        times.measure("mlp_fc2") {
            layer.fc2(ws.hidden.data, rows: sequences, into: x.data, ldy: stride, accumulate: true, context: context)
        }
    }

    private func forward(_ layer: EncoderLayer, _ x: Tensor, _ ws: EncoderWorkspace,
                         sequences: Int, tokens: Int, causal: Bool, context: ComputeContext,
                         times: StageTimes?) {
        let rows = ws.rows
        times.measure("layernorm") { layer.layerNorm1(x.data, rows: rows, into: ws.normed.data, context: context) }
        times.measure("qkv") { layer.qkv(ws.normed.data, rows: rows, into: ws.qkv.data, context: context) }
        times.measure("attention") {
            Functional.attention(qkv: ws.qkv.data, sequences: sequences, tokens: tokens,
                                 heads: shape.heads, headDim: shape.headDim, causal: causal,
                                 into: ws.attended.data, context: context)
        }
        // x += out_proj(attn), the residual fused into the GEMM epilogue
        times.measure("out_proj") {
            layer.outProjection(ws.attended.data, rows: rows, into: x.data, accumulate: true, context: context)
        }
        times.measure("layernorm") { layer.layerNorm2(x.data, rows: rows, into: ws.normed.data, context: context) }
        times.measure("mlp_fc1") {
            layer.fc1(ws.normed.data, rows: rows, into: ws.hidden.data, activation: activation, context: context)
        }
        times.measure("mlp_fc2") {
            layer.fc2(ws.hidden.data, rows: rows, into: x.data, accumulate: true, context: context)
        }
    }
}
