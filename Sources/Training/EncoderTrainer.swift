import CKernels
import M2Model
import Ops

/// The residual stream of one encoder pass during training: all rows, or — after the last
/// block's attention, where every remaining op works row by row — only the rows that reach the
/// loss (CLS of each frame; EOT and masked tokens of a prompt).
final class EncoderStream {
    /// (rows, d) before the cut, (needed.count, d) after it.
    var x: Tensor
    var isCut = false
    /// How all rows are grouped (clips, frames, tokens).
    let layout: SequenceLayout
    /// Rows (indices into all rows) kept at the cut, sorted.
    let needed: [Int]
    /// How the kept rows are grouped (for the TED-Adapter's conv over frames: (clips, T, 1)).
    let cutLayout: SequenceLayout
    /// Leading query tokens the last attention needs (1 when only CLS is kept).
    let lastQueries: Int

    init(x: Tensor, layout: SequenceLayout, needed: [Int], cutLayout: SequenceLayout, lastQueries: Int) {
        precondition(needed.allSatisfy { $0 % layout.tokens < lastQueries }, "a kept row is not a query")
        precondition(cutLayout.rows == needed.count)
        self.x = x
        self.layout = layout
        self.needed = needed
        self.cutLayout = cutLayout
        self.lastQueries = lastQueries
    }

    var currentLayout: SequenceLayout { isCut ? cutLayout : layout }
}

/// Training-time forward and backward of a `TransformerEncoder` with adapters.
///
/// A pass is a list of stages, four per block: 0 pre-attention adapter, 1 attention, 2 pre-FFN
/// adapter, 3 MLP (stage = 4·block + slot). Stages below the lowest adapter are frozen and keep
/// nothing; the backward stops at the lowest adapter (nothing below it trains).
///
/// Saved per block from the lowest adapter up, for R rows of width d (what it costs):
/// attention input (R·d), qkv (3R·d), MLP input (R·d), fc1 output before QuickGELU (R·4d),
/// and per adapter its input (R·d) and bottleneck activations (TED: R·r + R·r; text: R·r).
/// Attention scores are recomputed per head in the backward; GELU outputs and the adapters'
/// conv outputs are recomputed from the saved inputs.
final class EncoderTrainer: @unchecked Sendable {
    let encoder: TransformerEncoder
    let preAttention: [AdapterTrainer?]
    let preMLP: [AdapterTrainer?]
    let causal: Bool
    /// Keep only each block's MLP input and recompute ln_2 + fc1 in the backward instead of
    /// keeping fc1's output (the largest saved activation): the same gradients, bit for bit,
    /// for one more fc1 GEMM per block.
    var recomputesMLPHidden = false

    init(encoder: TransformerEncoder, preAttention: [AdapterTrainer?], preMLP: [AdapterTrainer?], causal: Bool) {
        precondition(preAttention.count == encoder.layers.count && preMLP.count == encoder.layers.count)
        self.encoder = encoder
        self.preAttention = preAttention
        self.preMLP = preMLP
        self.causal = causal
    }

    var stageCount: Int { 4 * encoder.layers.count }
    /// Stage 1 of the last block: its attention, after which the stream is cut.
    var cutStage: Int { stageCount - 3 }

    /// The lowest stage holding an adapter, nil when there is none.
    var lowestTrainableStage: Int? {
        for l in 0..<encoder.layers.count {
            if preAttention[l] != nil { return 4 * l }
            if preMLP[l] != nil { return 4 * l + 2 }
        }
        return nil
    }

    final class LayerTape {
        var preAttention: AdapterTape?
        var attentionInput: Tensor? // (R, d)
        var qkv: Tensor?            // (R, 3d)
        var preMLP: AdapterTape?
        var mlpInput: Tensor?       // (R', d)
        var mlpHidden: Tensor?      // (R', inner), before the activation
    }

    final class Tape {
        var layers: [LayerTape]
        /// Stages from here up kept their activations.
        let from: Int
        init(layers: Int, from: Int) {
            self.layers = (0..<layers).map { _ in LayerTape() }
            self.from = from
        }
    }

    /// Runs `stages` on the stream; with a tape, keeps what the backward of those stages needs.
    func forward(_ s: EncoderStream, stages: Range<Int>, tape: Tape?, context: ComputeContext) {
        let shape = encoder.shape, d = shape.hiddenSize
        for stage in stages {
            let l = stage / 4, layer = encoder.layers[l]
            let keep = tape.map { stage >= $0.from } ?? false
            let lt = tape?.layers[l]
            switch stage % 4 {
            case 0:
                if let adapter = preAttention[l] {
                    let t = adapter.forward(s.x, layout: s.currentLayout, context: context)
                    if keep { lt?.preAttention = t }
                }
            case 1:
                precondition(!s.isCut, "attention after the cut")
                let rows = s.layout.rows, tokens = s.layout.tokens
                let last = stage == cutStage
                let queries = last ? s.lastQueries : tokens
                let normed = Tensor(shape: [rows, d]), qkv = Tensor(shape: [rows, 3 * d])
                layer.layerNorm1(s.x.data, rows: rows, into: normed.data, context: context)
                layer.qkv(normed.data, rows: rows, into: qkv.data, context: context)
                let attended = Tensor(shape: [s.layout.sequences * queries, d])
                Functional.attention(qkv: qkv.data, sequences: s.layout.sequences, tokens: tokens, queries: queries,
                                     heads: shape.heads, headDim: shape.headDim, causal: causal,
                                     into: attended.data, context: context)
                if keep {
                    lt?.attentionInput = Tensor(shape: [rows, d], copying: s.x.data)
                    lt?.qkv = qkv
                }
                if last {
                    // x_kept = x[needed] + out_proj(attn[needed]): every later op is row-wise
                    let kept = s.needed.count
                    let xKept = Tensor(shape: [kept, d]), aKept = Tensor(shape: [kept, d])
                    for (i, row) in s.needed.enumerated() {
                        (xKept.data + i * d).update(from: s.x.data + row * d, count: d)
                        let q = (row / tokens) * queries + row % tokens
                        (aKept.data + i * d).update(from: attended.data + q * d, count: d)
                    }
                    layer.outProjection(aKept.data, rows: kept, into: xKept.data, accumulate: true, context: context)
                    s.x = xKept
                    s.isCut = true
                } else {
                    layer.outProjection(attended.data, rows: rows, into: s.x.data, accumulate: true, context: context)
                }
            case 2:
                if let adapter = preMLP[l] {
                    let t = adapter.forward(s.x, layout: s.currentLayout, context: context)
                    if keep { lt?.preMLP = t }
                }
            default:
                let rows = s.currentLayout.rows, inner = shape.intermediateSize
                let normed = Tensor(shape: [rows, d]), u = Tensor(shape: [rows, inner])
                layer.layerNorm2(s.x.data, rows: rows, into: normed.data, context: context)
                layer.fc1(normed.data, rows: rows, into: u.data, context: context)
                if keep { lt?.mlpInput = Tensor(shape: [rows, d], copying: s.x.data) }
                if keep && !recomputesMLPHidden {
                    lt?.mlpHidden = u
                    let g = Tensor(shape: [rows, inner])
                    Elementwise.activation(encoder.activation, u.data, into: g.data, rows: rows, width: inner,
                                           context: context)
                    layer.fc2(g.data, rows: rows, into: s.x.data, accumulate: true, context: context)
                } else {
                    Elementwise.activation(encoder.activation, u.data, into: u.data, rows: rows, width: inner,
                                           context: context)
                    layer.fc2(u.data, rows: rows, into: s.x.data, accumulate: true, context: context)
                }
            }
        }
    }

    /// Backward from dL/d(output) of the kept rows, (needed.count, d), through the stages
    /// from the last down to `tape.from`, adding the adapters' weight gradients.
    func backward(_ tape: Tape, stream s: EncoderStream, dOutput: Tensor, context: ComputeContext) {
        precondition(s.isCut, "backward from an uncut stream")
        let shape = encoder.shape, d = shape.hiddenSize
        var dx = dOutput
        var cut = true
        for stage in stride(from: stageCount - 1, through: tape.from, by: -1) {
            let l = stage / 4, layer = encoder.layers[l], lt = tape.layers[l]
            let layout = cut ? s.cutLayout : s.layout
            switch stage % 4 {
            case 3:
                // x += fc2(act(u)), u = fc1(ln_2(x))
                let rows = layout.rows, inner = shape.intermediateSize
                guard let input = lt.mlpInput else { fatalError("MLP of block \(l) not kept") }
                let u: Tensor
                if let kept = lt.mlpHidden {
                    u = kept
                } else { // u = fc1(ln_2(x)), exactly as the forward computed it
                    u = Tensor(shape: [rows, inner])
                    let normed = Tensor(shape: [rows, d])
                    layer.layerNorm2(input.data, rows: rows, into: normed.data, context: context)
                    layer.fc1(normed.data, rows: rows, into: u.data, context: context)
                }
                let du = Tensor(shape: [rows, inner])
                layer.fc2.backwardInput(dx.data, rows: rows, into: du.data, accumulate: false, context: context)
                Elementwise.activationBackward(encoder.activation, input: u.data, dy: du.data, into: du.data,
                                               count: rows * inner, context: context)
                let dn = Tensor(shape: [rows, d])
                layer.fc1.backwardInput(du.data, rows: rows, into: dn.data, accumulate: false, context: context)
                layer.layerNorm2.backward(input: input.data, rows: rows, dy: dn.data, into: dx.data, accumulate: true,
                                          context: context)
            case 2:
                if let adapter = preMLP[l], let t = lt.preMLP {
                    adapter.backward(t, dx: dx, layout: layout, inputGradient: stage > tape.from, context: context)
                }
            case 1:
                // x += out_proj(attn(qkv)), qkv = in_proj(ln_1(x))
                guard let input = lt.attentionInput, let qkv = lt.qkv else { fatalError("attention of block \(l) not kept") }
                let rows = s.layout.rows, tokens = s.layout.tokens
                let queries = stage == cutStage ? s.lastQueries : tokens
                let dAttended = Tensor(shape: [s.layout.sequences * queries, d])
                if cut {
                    let kept = s.needed.count
                    let dKept = Tensor(shape: [kept, d])
                    layer.outProjection.backwardInput(dx.data, rows: kept, into: dKept.data, accumulate: false,
                                                      context: context)
                    let full = Tensor(shape: [rows, d])
                    for (i, row) in s.needed.enumerated() {
                        (full.data + row * d).update(from: dx.data + i * d, count: d)
                        let q = (row / tokens) * queries + row % tokens
                        (dAttended.data + q * d).update(from: dKept.data + i * d, count: d)
                    }
                    dx = full
                    cut = false
                } else {
                    layer.outProjection.backwardInput(dx.data, rows: rows, into: dAttended.data, accumulate: false,
                                                      context: context)
                }
                let dqkv = Tensor(shape: [rows, 3 * d])
                m2k_attention_backward(context.kernels, context.pool, s.layout.sequences, tokens, queries,
                                       Int32(shape.heads), Int32(shape.headDim), qkv.data, 3 * d, dAttended.data, d,
                                       dqkv.data, 3 * d, causal ? 1 : 0)
                let dn = Tensor(shape: [rows, d])
                layer.qkv.backwardInput(dqkv.data, rows: rows, into: dn.data, accumulate: false, context: context)
                layer.layerNorm1.backward(input: input.data, rows: rows, dy: dn.data, into: dx.data, accumulate: true,
                                          context: context)
            default:
                if let adapter = preAttention[l], let t = lt.preAttention {
                    adapter.backward(t, dx: dx, layout: layout, inputGradient: stage > tape.from, context: context)
                }
            }
        }
    }
}
