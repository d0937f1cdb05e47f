import Foundation
import M2Model
import Ops

/// The CMLM decoder (spec §4), training only: the masked prompt tokens attend to their clip's
/// T frame embeddings through a frozen copy of the last text block, then its text adapters, its
/// MLP, ln_final and the BERT-style MLM head (dense → GELU → LayerNorm(1e-12) → decoder + bias).
///
/// Every op after the cross-attention works row by row and the keys are frames, not tokens,
/// so only the masked rows are computed: they are all that reaches the CE loss.
final class CMLMTrainer: @unchecked Sendable {
    let block: EncoderLayer
    let heads: Int
    let activation: Activation
    let preAttention: TextAdapterTrainer?
    let preMLP: TextAdapterTrainer?
    let finalLayerNorm: LayerNorm
    let dense: Linear
    let headNorm: LayerNorm
    let decoder: Linear
    let denseGradient: LinearGradient
    let headNormGradient: LayerNormGradient
    let decoderGradient: LinearGradient
    let words: [String]

    init(model: M2CLIPModel, configuration cmlm: CMLMConfiguration, reader: WeightReader, gradients: GradientSet,
         context: ComputeContext) throws {
        let c = model.configuration, text = c.clip.text
        let d = text.encoder.hiddenSize, layers = text.encoder.layers
        block = try EncoderLayer(names: M2CLIPNames.cmlmBlock(textLayers: layers), shape: text.encoder,
                                 reader: reader, context: context)
        heads = text.encoder.heads
        activation = model.text.encoder.activation
        func adapter(_ position: TEDConfiguration.Position) throws -> TextAdapterTrainer? {
            guard cmlm.adapterPositions.contains(position) else { return nil }
            let names = M2CLIPNames.textAdapter(layer: layers, position: position)
            let a = try TextAdapter(names: names, width: c.textAdapter.width, hidden: d, reader: reader,
                                    context: context)
            return TextAdapterTrainer(a, names: names, gradients: gradients)
        }
        preAttention = try adapter(.preAttention)
        preMLP = try adapter(.preMLP)
        finalLayerNorm = model.text.finalLayerNorm
        typealias H = M2CLIPNames.MLMHead
        words = cmlm.words
        dense = try reader.linear(H.dense, in: d, out: d, context: context)
        headNorm = try reader.layerNorm(H.layerNorm, width: d, epsilon: H.layerNormEps)
        decoder = try reader.linear(weight: H.decoderWeight, bias: H.decoderBias, in: d, out: cmlm.words.count,
                                    context: context)
        denseGradient = LinearGradient(dense)
        headNormGradient = LayerNormGradient(headNorm)
        decoderGradient = LinearGradient(decoder)
        gradients.register(H.dense, denseGradient)
        gradients.register(H.layerNorm, headNormGradient)
        gradients.register(H.decoderWeight, shape: decoderGradient.weight.shape, buffer: decoderGradient.weight,
                           parameter: .linearWeight(decoder))
        gradients.register(H.decoderBias, shape: decoderGradient.bias!.shape, buffer: decoderGradient.bias!,
                           parameter: .tensor(decoder.bias!))
    }

    final class Tape {
        let clipOf: [Int]
        let frames: Tensor       // F: (B·T, d)
        let framesPerClip: Int
        var preAttention: AdapterTape?
        var attentionInput: Tensor! // (n, d)
        var qkvQuery: Tensor!       // (n, 3d)
        var qkvFrames: Tensor!      // (B·T, 3d)
        var probabilities: [Float] = [] // (n, heads, T)
        var preMLP: AdapterTape?
        var mlpInput: Tensor!
        var mlpHidden: Tensor!
        var finalInput: Tensor!     // before ln_final
        var normed: Tensor!         // ln_final output = dense input
        var denseOutput: Tensor!    // before GELU
        var headNormInput: Tensor!  // GELU output
        var decoderInput: Tensor!
        var logits: [Float] = []
        init(clipOf: [Int], frames: Tensor, framesPerClip: Int) {
            self.clipOf = clipOf
            self.frames = frames
            self.framesPerClip = framesPerClip
        }
    }

    /// MLM logits (n, V) of `queries` (n, d): text rows before ln_final; row i belongs to
    /// clip `clipOf[i]`, whose frame embeddings are rows clipOf[i]·T ..< (clipOf[i]+1)·T of
    /// `frames` (B·T, d).
    func forward(queries: Tensor, clipOf: [Int], frames: Tensor, framesPerClip t: Int,
                 context: ComputeContext) -> Tape {
        let n = queries.shape[0], d = queries.shape[1], hd = d / heads
        let tape = Tape(clipOf: clipOf, frames: frames, framesPerClip: t)
        let rowLayout = SequenceLayout(clips: 1, frames: 1, tokens: n)
        let x = Tensor(shape: [n, d], copying: queries.data)
        tape.preAttention = preAttention?.forward(x, layout: rowLayout, context: context)
        // cross-attention: Q from ln_1(text), K and V from ln_1(frames)
        tape.attentionInput = Tensor(shape: [n, d], copying: x.data)
        let nq = Tensor(shape: [n, d]), qkvQ = Tensor(shape: [n, 3 * d])
        block.layerNorm1(x.data, rows: n, into: nq.data, context: context)
        block.qkv(nq.data, rows: n, into: qkvQ.data, context: context)
        let bt = frames.shape[0]
        let nf = Tensor(shape: [bt, d]), qkvF = Tensor(shape: [bt, 3 * d])
        block.layerNorm1(frames.data, rows: bt, into: nf.data, context: context)
        block.qkv(nf.data, rows: bt, into: qkvF.data, context: context)
        tape.qkvQuery = qkvQ
        tape.qkvFrames = qkvF
        let scale = 1 / Float(hd).squareRoot()
        var probabilities = [Float](repeating: 0, count: n * heads * t)
        let attended = Tensor(shape: [n, d])
        for i in 0..<n {
            for h in 0..<heads {
                let q = qkvQ.data + i * 3 * d + h * hd
                var s = [Float](repeating: 0, count: t)
                for f in 0..<t {
                    let k = qkvF.data + (clipOf[i] * t + f) * 3 * d + d + h * hd
                    var dot: Float = 0
                    for j in 0..<hd { dot += q[j] * k[j] }
                    s[f] = dot * scale
                }
                let p = softmax(s)
                let o = attended.data + i * d + h * hd
                for f in 0..<t {
                    probabilities[(i * heads + h) * t + f] = p[f]
                    let v = qkvF.data + (clipOf[i] * t + f) * 3 * d + 2 * d + h * hd
                    for j in 0..<hd { o[j] += p[f] * v[j] }
                }
            }
        }
        tape.probabilities = probabilities
        block.outProjection(attended.data, rows: n, into: x.data, accumulate: true, context: context)
        tape.preMLP = preMLP?.forward(x, layout: rowLayout, context: context)
        // x += mlp(ln_2(x))
        let inner = block.fc1.outFeatures
        tape.mlpInput = Tensor(shape: [n, d], copying: x.data)
        let n2 = Tensor(shape: [n, d]), u = Tensor(shape: [n, inner]), g = Tensor(shape: [n, inner])
        block.layerNorm2(x.data, rows: n, into: n2.data, context: context)
        block.fc1(n2.data, rows: n, into: u.data, context: context)
        Elementwise.activation(activation, u.data, into: g.data, rows: n, width: inner, context: context)
        block.fc2(g.data, rows: n, into: x.data, accumulate: true, context: context)
        tape.mlpHidden = u
        // ln_final, then the MLM head
        tape.finalInput = x
        let y = Tensor(shape: [n, d])
        finalLayerNorm(x.data, rows: n, into: y.data, context: context)
        tape.normed = y
        let a = Tensor(shape: [n, d]), ga = Tensor(shape: [n, d]), z = Tensor(shape: [n, d])
        dense(y.data, rows: n, into: a.data, context: context)
        Elementwise.activation(.gelu, a.data, into: ga.data, rows: n, width: d, context: context)
        headNorm(ga.data, rows: n, into: z.data, context: context)
        tape.denseOutput = a
        tape.headNormInput = ga
        tape.decoderInput = z
        let logits = Tensor(shape: [n, decoder.outFeatures])
        decoder(z.data, rows: n, into: logits.data, context: context)
        tape.logits = logits.array
        return tape
    }

    /// From dL/dlogits (n, V): adds the head's and adapters' weight gradients and returns
    /// dL/dqueries (n, d) and dL/dframes (B·T, d).
    func backward(_ tape: Tape, dLogits: [Float], context: ComputeContext) -> (queries: Tensor, frames: Tensor) {
        let n = tape.attentionInput.shape[0], d = tape.attentionInput.shape[1], hd = d / heads
        let t = tape.framesPerClip, rowLayout = SequenceLayout(clips: 1, frames: 1, tokens: n)
        let dl = Tensor(shape: [n, decoder.outFeatures], values: dLogits)
        // logits = decoder(z)
        decoder.backwardWeights(dl.data, rows: n, input: tape.decoderInput.data, into: decoderGradient, context: context)
        let dz = Tensor(shape: [n, d])
        decoder.backwardInput(dl.data, rows: n, into: dz.data, accumulate: false, context: context)
        // z = LN(g), g = GELU(a), a = dense(y)
        let dg = Tensor(shape: [n, d])
        headNorm.backward(input: tape.headNormInput.data, rows: n, dy: dz.data, into: dg.data, accumulate: false,
                          gradient: headNormGradient, context: context)
        Elementwise.activationBackward(.gelu, input: tape.denseOutput.data, dy: dg.data, into: dg.data, count: n * d,
                                       context: context)
        dense.backwardWeights(dg.data, rows: n, input: tape.normed.data, into: denseGradient, context: context)
        let dy = Tensor(shape: [n, d])
        dense.backwardInput(dg.data, rows: n, into: dy.data, accumulate: false, context: context)
        // y = ln_final(x)
        let dx = Tensor(shape: [n, d])
        finalLayerNorm.backward(input: tape.finalInput.data, rows: n, dy: dy.data, into: dx.data, accumulate: false,
                                context: context)
        // x += fc2(act(u)), u = fc1(ln_2(x))
        let inner = block.fc1.outFeatures
        let du = Tensor(shape: [n, inner])
        block.fc2.backwardInput(dx.data, rows: n, into: du.data, accumulate: false, context: context)
        Elementwise.activationBackward(activation, input: tape.mlpHidden.data, dy: du.data, into: du.data,
                                       count: n * inner, context: context)
        let dn2 = Tensor(shape: [n, d])
        block.fc1.backwardInput(du.data, rows: n, into: dn2.data, accumulate: false, context: context)
        block.layerNorm2.backward(input: tape.mlpInput.data, rows: n, dy: dn2.data, into: dx.data, accumulate: true,
                                  context: context)
        if let adapter = preMLP, let at = tape.preMLP {
            adapter.backward(at, dx: dx, layout: rowLayout, inputGradient: true, context: context)
        }
        // x += out_proj(o), o = softmax(Q Kᵀ/√hd) V per head over the clip's frames
        let dAttended = Tensor(shape: [n, d])
        block.outProjection.backwardInput(dx.data, rows: n, into: dAttended.data, accumulate: false, context: context)
        let bt = tape.frames.shape[0]
        let dqkvQ = Tensor(shape: [n, 3 * d]), dqkvF = Tensor(shape: [bt, 3 * d])
        let qkvQ = tape.qkvQuery!, qkvF = tape.qkvFrames!
        let scale = 1 / Float(hd).squareRoot()
        for i in 0..<n {
            let base = tape.clipOf[i] * t
            for h in 0..<heads {
                let dO = dAttended.data + i * d + h * hd
                let p = tape.probabilities[((i * heads + h) * t)..<((i * heads + h + 1) * t)].map { $0 }
                // dp_f = dO · v_f; ds = p ⊙ (dp − Σ p dp)
                var dp = [Float](repeating: 0, count: t)
                for f in 0..<t {
                    let v = qkvF.data + (base + f) * 3 * d + 2 * d + h * hd
                    var s: Float = 0
                    for j in 0..<hd { s += dO[j] * v[j] }
                    dp[f] = s
                    let dv = dqkvF.data + (base + f) * 3 * d + 2 * d + h * hd
                    for j in 0..<hd { dv[j] += p[f] * dO[j] }
                }
                var pdp: Float = 0
                for f in 0..<t { pdp += p[f] * dp[f] }
                let q = qkvQ.data + i * 3 * d + h * hd
                let dq = dqkvQ.data + i * 3 * d + h * hd
                for f in 0..<t {
                    let ds = p[f] * (dp[f] - pdp) * scale
                    let k = qkvF.data + (base + f) * 3 * d + d + h * hd
                    let dk = dqkvF.data + (base + f) * 3 * d + d + h * hd
                    for j in 0..<hd {
                        dq[j] += ds * k[j]
                        dk[j] += ds * q[j]
                    }
                }
            }
        }
        // Q = in_proj(ln_1(x)), K, V = in_proj(ln_1(F))
        let dnq = Tensor(shape: [n, d])
        block.qkv.backwardInput(dqkvQ.data, rows: n, into: dnq.data, accumulate: false, context: context)
        block.layerNorm1.backward(input: tape.attentionInput.data, rows: n, dy: dnq.data, into: dx.data,
                                  accumulate: true, context: context)
        let dnf = Tensor(shape: [bt, d]), dFrames = Tensor(shape: [bt, d])
        block.qkv.backwardInput(dqkvF.data, rows: bt, into: dnf.data, accumulate: false, context: context)
        block.layerNorm1.backward(input: tape.frames.data, rows: bt, dy: dnf.data, into: dFrames.data,
                                  accumulate: false, context: context)
        if let adapter = preAttention, let at = tape.preAttention {
            adapter.backward(at, dx: dx, layout: rowLayout, inputGradient: true, context: context)
        }
        return (dx, dFrames)
    }
}
