import Foundation
import Ops

/// One pre-LN block: x += attn(ln_1(x)); x += mlp(ln_2(x)).
package final class EncoderLayer: @unchecked Sendable {
    package let layerNorm1: LayerNorm
    package let qkv: Linear        // (3d ← d): Q | K | V
    package let outProjection: Linear
    package let layerNorm2: LayerNorm
    package let fc1: Linear
    package let fc2: Linear

    package init(names: BlockNames, shape: EncoderShape, reader: WeightReader, context: ComputeContext) throws {
        let d = shape.hiddenSize, inner = shape.intermediateSize
        layerNorm1 = try reader.layerNorm(names.layerNorm1, width: d, epsilon: shape.layerNormEps)
        layerNorm2 = try reader.layerNorm(names.layerNorm2, width: d, epsilon: shape.layerNormEps)
        switch names.attention {
        case .separate(let q, let k, let v):
            var weight: [Float] = [], bias: [Float] = []
            for prefix in [q, k, v] {
                weight += try reader.floats(prefix.weight, shape: [d, d])
                bias += try reader.floats(prefix.bias, shape: [d])
            }
            qkv = Linear(weight: weight, bias: bias, inFeatures: d, outFeatures: 3 * d, context: context)
        case .fused(let weight, let bias):
            qkv = try reader.linear(weight: weight, bias: bias, in: d, out: 3 * d, context: context)
        }
        outProjection = try reader.linear(names.outProjection, in: d, out: d, context: context)
        fc1 = try reader.linear(names.fc1, in: d, out: inner, context: context)
        fc2 = try reader.linear(names.fc2, in: inner, out: d, context: context)
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

/// How the rows of an encoder's residual stream are grouped: `clips` × `frames` sequences of
/// `tokens` tokens, (clips, frames, tokens, d) in memory. Plain CLIP treats every frame as a
/// clip of one; M²-CLIP's adapters mix the frames of a clip.
public struct SequenceLayout: Sendable, Equatable {
    public var clips: Int
    public var frames: Int
    public var tokens: Int

    public init(clips: Int, frames: Int, tokens: Int) {
        self.clips = clips
        self.frames = frames
        self.tokens = tokens
    }

    public var sequences: Int { clips * frames }
    public var rows: Int { clips * frames * tokens }
}

/// A module that rewrites the residual stream between sub-blocks: x ← A(x) (spec §2–3).
package protocol ResidualAdapter: AnyObject, Sendable {
    /// - Parameter firstTokenOnly: only token 0 of each sequence will be read afterwards;
    ///   the other rows may be left unchanged.
    func apply(_ x: Tensor, layout: SequenceLayout, firstTokenOnly: Bool, context: ComputeContext,
               times: StageTimes?)
}

/// The adapters of one block, by position.
package struct BlockAdapters: Sendable {
    package var preAttention: ResidualAdapter?
    package var preMLP: ResidualAdapter?

    static let none = BlockAdapters()
}

/// The stack of blocks shared by the image and text towers.
package final class TransformerEncoder: @unchecked Sendable {
    package let shape: EncoderShape
    package let layers: [EncoderLayer]
    package let adapters: [BlockAdapters]
    package let activation: Activation
    /// The last pass's buffers, reused when the next pass has as many rows (steady-state
    /// inference then allocates none); a pass that finds them in use allocates its own.
    private var cachedWorkspace: EncoderWorkspace?
    private let workspaceLock = NSLock()

    init(shape: EncoderShape, names: (Int) -> BlockNames, reader: WeightReader,
         adapters: [Int: BlockAdapters] = [:], context: ComputeContext) throws {
        self.shape = shape
        activation = shape.activation ?? .quickGELU
        layers = try (0..<shape.layers).map {
            try EncoderLayer(names: names($0), shape: shape, reader: reader, context: context)
        }
        self.adapters = (0..<shape.layers).map { adapters[$0] ?? .none }
    }

    /// Runs every block in place on x: (sequences, tokens, d). Attention stays within a
    /// sequence (a frame of a clip, or one text).
    /// - Parameter firstTokenOnly: the caller reads only token 0 (CLS) of each sequence
    ///   after the last block, so that block attends from CLS only and runs its out_proj
    ///   and MLP on CLS rows only; the other rows of x are then left as they were before
    ///   the last block. The CLS rows are the same as a full pass computes.
    func callAsFunction(_ x: Tensor, layout: SequenceLayout, causal: Bool,
                        firstTokenOnly: Bool = false, context: ComputeContext, times: StageTimes?,
                        trace: LayerTrace? = nil) {
        let ws = takeWorkspace(rows: layout.rows)
        defer { returnWorkspace(ws) }
        for (index, layer) in layers.enumerated() {
            let pruned = firstTokenOnly && index == layers.count - 1
            adapters[index].preAttention?.apply(x, layout: layout, firstTokenOnly: false,
                                                context: context, times: times)
            attention(layer, x, ws, layout: layout, causal: causal, firstTokenOnly: pruned,
                      context: context, times: times)
            adapters[index].preMLP?.apply(x, layout: layout, firstTokenOnly: pruned,
                                          context: context, times: times)
            mlp(layer, x, ws, layout: layout, firstTokenOnly: pruned, context: context, times: times)
            if let trace {
                let rows = pruned ? (0..<layout.sequences).map { $0 * layout.tokens } : Array(0..<layout.rows)
                trace.record(x, rows: rows, width: shape.hiddenSize)
            }
        }
    }

    private func takeWorkspace(rows: Int) -> EncoderWorkspace {
        workspaceLock.lock()
        defer { workspaceLock.unlock() }
        if let ws = cachedWorkspace, ws.rows == rows {
            cachedWorkspace = nil
            return ws
        }
        return EncoderWorkspace(rows: rows, shape: shape)
    }

    private func returnWorkspace(_ ws: EncoderWorkspace) {
        workspaceLock.lock()
        cachedWorkspace = ws
        workspaceLock.unlock()
    }

    /// x += out_proj(attn(ln_1(x))). With `firstTokenOnly`, attends from token 0 only and
    /// updates only the token-0 rows.
    private func attention(_ layer: EncoderLayer, _ x: Tensor, _ ws: EncoderWorkspace,
                           layout: SequenceLayout, causal: Bool, firstTokenOnly: Bool,
                           context: ComputeContext, times: StageTimes?) {
        let rows = layout.rows, sequences = layout.sequences, tokens = layout.tokens
        let stride = tokens * shape.hiddenSize
        times.measure("layernorm") { layer.layerNorm1(x.data, rows: rows, into: ws.normed.data, context: context) }
        times.measure("qkv") { layer.qkv(ws.normed.data, rows: rows, into: ws.qkv.data, context: context) }
        times.measure("attention") {
            Functional.attention(qkv: ws.qkv.data, sequences: sequences, tokens: tokens,
                                 queries: firstTokenOnly ? 1 : tokens, heads: shape.heads,
                                 headDim: shape.headDim, causal: causal, into: ws.attended.data,
                                 context: context)
        }
        // the residual add is fused into the GEMM epilogue
        times.measure("out_proj") {
            if firstTokenOnly {
                layer.outProjection(ws.attended.data, rows: sequences, into: x.data, ldy: stride,
                                    accumulate: true, context: context)
            } else {
                layer.outProjection(ws.attended.data, rows: rows, into: x.data, accumulate: true, context: context)
            }
        }
    }

    /// x += mlp(ln_2(x)), on token-0 rows only with `firstTokenOnly`.
    private func mlp(_ layer: EncoderLayer, _ x: Tensor, _ ws: EncoderWorkspace,
                     layout: SequenceLayout, firstTokenOnly: Bool, context: ComputeContext,
                     times: StageTimes?) {
        let rows = firstTokenOnly ? layout.sequences : layout.rows
        let ldx = firstTokenOnly ? layout.tokens * shape.hiddenSize : shape.hiddenSize
        times.measure("layernorm") {
            layer.layerNorm2(x.data, rows: rows, ldx: ldx, into: ws.normed.data, context: context)
        }
        times.measure("mlp_fc1") {
            layer.fc1(ws.normed.data, rows: rows, into: ws.hidden.data, activation: activation, context: context)
        }
        times.measure("mlp_fc2") {
            layer.fc2(ws.hidden.data, rows: rows, into: x.data, ldy: ldx, accumulate: true, context: context)
        }
    }

}
