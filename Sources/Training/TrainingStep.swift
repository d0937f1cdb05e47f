import Foundation
import M2Model
import Ops

/// The loss terms of one step (spec §4): total = (contrastive · (KL_v2t + KL_t2v)/2 + cmc ·
/// CE_cmc)/2 + vc · CE_vc + mlm · CE_mlm with the model's loss weights.
public struct LossTerms: Codable, Sendable, Equatable {
    public var contrastiveV2T: Float = 0
    public var contrastiveT2V: Float = 0
    public var cmc: Float = 0
    public var vc: Float = 0
    public var mlm: Float = 0
    public var total: Float = 0

    enum CodingKeys: String, CodingKey {
        case contrastiveV2T = "contrastive_v2t", contrastiveT2V = "contrastive_t2v", cmc, vc, mlm, total
    }

    /// Sets `total` from the terms with the weights `w`.
    mutating func weigh(_ w: LossWeights) {
        total = (w.contrastive * (contrastiveV2T + contrastiveT2V) / 2 + w.cmc * cmc) / 2 + w.vc * vc + w.mlm * mlm
    }
}

/// The class prompts of the label set with the frozen text blocks below the first text
/// adapter already run: they see the same prompts every step, so those blocks run once.
final class ClassPromptCache {
    let labels: [String]
    let layout: SequenceLayout
    let needed: [Int]
    let stream: Tensor  // the residual stream at the first adapter's stage
    let isCut: Bool
    let stage: Int

    init(model: TrainingModel, context: ComputeContext) {
        let m = model.model, tower = m.text
        labels = m.labels
        let prompts = model.classTokenIDs ?? labels.map { tower.configuration.maxPositions > 0
            ? m.tokenizer.encode(m.configuration.prompt(for: $0), contextLength: tower.configuration.maxPositions) : [] }
        let eots = prompts.map { tower.pooledIndex($0) }
        let length = (eots.max() ?? 0) + 1
        layout = SequenceLayout(clips: prompts.count, frames: 1, tokens: length)
        needed = eots.enumerated().map { $0.offset * length + $0.element }
        let x = TrainingModel.embedText(prompts, length: length, tower: tower)
        stage = model.text.lowestTrainableStage ?? model.text.stageCount
        let s = EncoderStream(x: x, layout: layout, needed: needed,
                              cutLayout: SequenceLayout(clips: 1, frames: 1, tokens: needed.count), lastQueries: length)
        model.text.forward(s, stages: 0..<stage, tape: nil, context: context)
        stream = s.x
        isCut = s.isCut
    }

    /// A fresh stream starting at `stage` (a copy: the forward writes into it).
    func makeStream() -> EncoderStream {
        let s = EncoderStream(x: Tensor(shape: stream.shape, copying: stream.data), layout: layout, needed: needed,
                              cutLayout: SequenceLayout(clips: 1, frames: 1, tokens: needed.count),
                              lastQueries: layout.tokens)
        s.isCut = isCut
        return s
    }
}

/// Dropout on the VC head's input (training only, spec §9): each value kept with probability
/// 1 − p and scaled by 1/(1 − p).
public struct Dropout: Sendable, Equatable {
    public var probability: Float
    public var seed: UInt64

    public init(probability: Float = 0.5, seed: UInt64) {
        self.probability = probability
        self.seed = seed
    }

    func mask(count: Int) -> [Float] {
        var rng = SplitMix64(seed: seed)
        let keep = 1 / (1 - probability)
        return (0..<count).map { _ in Float(rng.next() >> 40) / Float(1 << 24) < probability ? 0 : keep }
    }
}

extension TrainingModel {
    /// Token + position embeddings of `prompts`, each padded (with its own ids, then zeros) to
    /// `length`: (prompts, length, d). With the causal mask, padding never reaches a row before it.
    static func embedText(_ prompts: [[Int32]], length: Int, tower: TextTower) -> Tensor {
        let d = tower.configuration.encoder.hiddenSize
        let x = Tensor(shape: [prompts.count, length, d])
        for (i, ids) in prompts.enumerated() {
            for p in 0..<length {
                let row = x.data + (i * length + p) * d
                for j in 0..<d { row[j] = tower.positionEmbedding[p * d + j] }
                tower.tokenEmbedding.add(row: Int(p < ids.count ? ids[p] : 0), to: row)
            }
        }
        return x
    }

    /// The image tower's forward for a batch: the stream (and tape) through the blocks, the
    /// CLS rows, the frame embeddings after the post adapter and their mean over frames.
    struct ImagePass {
        let stream: EncoderStream
        let tape: EncoderTrainer.Tape?
        let cls: Tensor          // (B·T, d)
        let frames: Tensor       // e: (B·T, P)
        let postSaved: (input: Tensor, hidden: Tensor)?
        let video: [Float]       // v: (B, P)
    }

    func imagePass(_ batch: TrainingBatch, taped: Bool, context: ComputeContext) -> ImagePass {
        let m = model, c = m.configuration.clip
        let b = batch.clips, t = batch.frames, d = c.vision.encoder.hiddenSize, p = c.projectionDim
        let tokens = c.vision.tokens, frames = b * t
        // ---- image tower: (B·T, 1+M, d), cut to CLS after the last attention
        let x = batch.pixels.withUnsafeBufferPointer { m.vision.embed(pixels: $0.baseAddress!, frames: frames, context: context) }
        let vs = EncoderStream(x: x, layout: SequenceLayout(clips: b, frames: t, tokens: tokens),
                               needed: (0..<frames).map { $0 * tokens },
                               cutLayout: SequenceLayout(clips: b, frames: t, tokens: 1), lastQueries: 1)
        let visionTape = taped
            ? vision.lowestTrainableStage.map { EncoderTrainer.Tape(layers: vision.encoder.layers.count, from: $0) } : nil
        vision.forward(vs, stages: 0..<vision.stageCount, tape: visionTape, context: context)
        let cls = vs.x // (B·T, d)
        // e0 = ln_post(CLS) · proj; e = post adapter(e0); v = mean_T e
        let pooled = Tensor(shape: [frames, d])
        m.vision.postLayerNorm(cls.data, rows: frames, into: pooled.data, context: context)
        let e = Tensor(shape: [frames, p])
        m.vision.projection(pooled.data, rows: frames, into: e.data, context: context)
        let postSaved = postAdapter?.forward(e, clips: b, frames: t, context: context)
        var v = [Float](repeating: 0, count: b * p)
        for i in 0..<b { for f in 0..<t { for j in 0..<p { v[i * p + j] += e.data[(i * t + f) * p + j] / Float(t) } } }
        return ImagePass(stream: vs, tape: visionTape, cls: cls, frames: e, postSaved: postSaved, video: v)
    }

    /// The text tower's forward on the batch's prompts, cut to the EOT rows and the masked rows.
    struct TextPass {
        let stream: EncoderStream
        let tape: EncoderTrainer.Tape?
        /// Stream rows kept after the cut: per clip its EOT and masked positions.
        let kept: [Int]
        /// Index into `kept` of each clip's EOT row.
        let eotKept: [Int]
        let masked: [(clip: Int, kept: Int, label: Int)]
        let eotRows: Tensor      // (B, d_text)
        let embeddings: Tensor   // (B, P)
    }

    func textPass(_ batch: TrainingBatch, useMLM: Bool, taped: Bool, context: ComputeContext) -> TextPass {
        let tower = model.text, b = batch.clips
        let eots = batch.inputIDs.map { tower.pooledIndex($0) }
        let length = (eots.max() ?? 0) + 1
        var masked: [(clip: Int, kept: Int, label: Int)] = []
        var eotKept: [Int] = []
        var kept: [Int] = []
        for i in 0..<b {
            var positions = Set([eots[i]])
            if useMLM {
                for (pos, label) in batch.mlmLabels![i].enumerated() where label != TrainingBatch.ignoredLabel {
                    positions.insert(pos)
                }
            }
            for pos in positions.sorted() {
                if pos == eots[i] { eotKept.append(kept.count) }
                if useMLM, batch.mlmLabels![i][pos] != TrainingBatch.ignoredLabel {
                    masked.append((i, kept.count, batch.mlmLabels![i][pos]))
                }
                kept.append(i * length + pos)
            }
        }
        let dt = tower.configuration.encoder.hiddenSize
        let ts = EncoderStream(x: TrainingModel.embedText(batch.inputIDs.map { Array($0.prefix(length)) }, length: length,
                                                          tower: tower),
                               layout: SequenceLayout(clips: b, frames: 1, tokens: length), needed: kept,
                               cutLayout: SequenceLayout(clips: 1, frames: 1, tokens: kept.count), lastQueries: length)
        let textTape = taped
            ? text.lowestTrainableStage.map { EncoderTrainer.Tape(layers: text.encoder.layers.count, from: $0) } : nil
        text.forward(ts, stages: 0..<text.stageCount, tape: textTape, context: context)
        let eotRows = Tensor(shape: [b, dt])
        for (i, k) in eotKept.enumerated() { (eotRows.data + i * dt).update(from: ts.x.data + k * dt, count: dt) }
        return TextPass(stream: ts, tape: textTape, kept: kept, eotKept: eotKept, masked: masked, eotRows: eotRows,
                        embeddings: project(eotRows, context: context))
    }

    /// The batch's video and prompt embeddings (forward only, no tape): the first pass of an
    /// exact accumulation, the same values the step's own forward computes.
    func contrastiveEmbeddings(_ batch: TrainingBatch, context: ComputeContext) -> (video: [Float], text: [Float]) {
        let image = imagePass(batch, taped: false, context: context)
        let useMLM = cmlm != nil && batch.mlmLabels != nil
        return (image.video, textPass(batch, useMLM: useMLM, taped: false, context: context).embeddings.array)
    }

    /// One forward and backward over `batch`: sets `gradients` to the gradient of the total
    /// loss (they are zeroed first) and returns the loss terms. Deterministic without
    /// `dropout`; with it, the VC head's input is dropped as in training (spec §9), the mask a
    /// function of the seed alone. With `share`, the batch is one micro-batch of a larger one:
    /// the contrastive gradient comes from the whole batch's loss and the other terms are
    /// weighted by the micro-batch's part (exact accumulation, `MicroBatchShare`).
    public func computeGradients(_ batch: TrainingBatch, context: ComputeContext,
                                 dropout: Dropout? = nil, share: MicroBatchShare? = nil) -> LossTerms {
        gradients.zero()
        if classPrompts == nil || classPrompts!.labels != model.labels {
            classPrompts = ClassPromptCache(model: self, context: context)
        }
        let m = model, c = m.configuration.clip, w = lossWeights
        let b = batch.clips, t = batch.frames, d = c.vision.encoder.hiddenSize, p = c.projectionDim
        let frames = b * t
        let sampleShare = share?.sampleFraction ?? 1, maskedShare = share?.maskedFraction ?? 1
        var terms = LossTerms()

        let image = imagePass(batch, taped: true, context: context)
        let vs = image.stream, visionTape = image.tape, cls = image.cls, e = image.frames
        let postSaved = image.postSaved, v = image.video
        // VC head: logits = fc(ln_post(mean_T CLS))
        var vcSaved: (mean: Tensor, normed: Tensor, dLogits: [Float], mask: [Float]?)?
        if let classifier = m.classifier, let _ = classifierGradient {
            let mean = Tensor(shape: [b, d]), normed = Tensor(shape: [b, d])
            for i in 0..<b { for f in 0..<t { for j in 0..<d { mean.data[i * d + j] += cls.data[(i * t + f) * d + j] / Float(t) } } }
            m.vision.postLayerNorm(mean.data, rows: b, into: normed.data, context: context)
            // training: normed ← dropout(normed) = normed · mask, mask ∈ {0, 1/(1−p)}
            let mask = dropout?.mask(count: b * d)
            if let mask { for j in 0..<(b * d) { normed.data[j] *= mask[j] } }
            let logits = Tensor(shape: [b, classifier.outFeatures])
            classifier(normed.data, rows: b, into: logits.data, context: context)
            let ce = Losses.crossEntropy(logits.array, rows: b, cols: classifier.outFeatures, labels: batch.labels,
                                         weight: w.vc * sampleShare)
            terms.vc = ce.loss
            vcSaved = (mean, normed, ce.gradient, mask)
        }

        // ---- text tower on the batch's prompts, cut to EOT and masked rows
        let tower = m.text
        let useMLM = cmlm != nil && batch.mlmLabels != nil
        let textSide = textPass(batch, useMLM: useMLM, taped: true, context: context)
        let ts = textSide.stream, textTape = textSide.tape, kept = textSide.kept, eotKept = textSide.eotKept
        let masked = textSide.masked, eotRows = textSide.eotRows, textEmbeddings = textSide.embeddings
        let dt = tower.configuration.encoder.hiddenSize

        // ---- class prompts, from the cached stream
        let cs = classPrompts!.makeStream()
        let classTape = text.lowestTrainableStage.map { EncoderTrainer.Tape(layers: text.encoder.layers.count, from: $0) }
        text.forward(cs, stages: classPrompts!.stage..<text.stageCount, tape: classTape, context: context)
        let classEmbeddings = project(cs.x, context: context) // (C, P)
        let classes = m.labels.count

        // ---- contrastive (KL both ways) and CMC
        let s = exp(m.logitScale)
        let (vHat, vNorm) = Losses.normalize(v, width: p)
        let (tHat, tNorm) = Losses.normalize(textEmbeddings.array, width: p)
        let (wHat, wNorm) = Losses.normalize(classEmbeddings.array, width: p)
        var dvHat: [Float], dtHat: [Float]
        if let share {
            // the whole batch's contrastive loss, already differentiated for these rows
            (terms.contrastiveV2T, terms.contrastiveT2V) = (share.contrastiveV2T, share.contrastiveT2V)
            (dvHat, dtHat) = (share.dVideoUnit, share.dTextUnit)
        } else {
            let kl = Losses.contrastive(videoUnit: vHat, textUnit: tHat, labels: batch.labels, width: p, scale: s,
                                        weight: w.contrastive)
            (terms.contrastiveV2T, terms.contrastiveT2V) = (kl.v2t, kl.t2v)
            (dvHat, dtHat) = (kl.dVideoUnit, kl.dTextUnit)
        }
        var dwHat = [Float](repeating: 0, count: classes * p)
        let cmcLogits = Losses.matmulTransposed(vHat, wHat, m: b, n: classes, k: p, scale: s)
        let cmc = Losses.crossEntropy(cmcLogits, rows: b, cols: classes, labels: batch.labels,
                                      weight: w.cmc / 2 * sampleShare)
        terms.cmc = cmc.loss
        Losses.matmulTransposedBackward(vHat, wHat, dc: cmc.gradient, m: b, n: classes, k: p, scale: s,
                                        da: &dvHat, db: &dwHat)

        // ---- CMLM on the masked rows, attending to the post-adapter frame embeddings
        var dFrames: Tensor?
        var dMasked: Tensor?
        if useMLM, let cmlm, !masked.isEmpty {
            let q = Tensor(shape: [masked.count, dt])
            for (i, r) in masked.enumerated() { (q.data + i * dt).update(from: ts.x.data + r.kept * dt, count: dt) }
            let tape = cmlm.forward(queries: q, clipOf: masked.map(\.clip), frames: Tensor(shape: e.shape, copying: e.data),
                                    framesPerClip: t, context: context)
            let ce = Losses.crossEntropy(tape.logits, rows: masked.count, cols: cmlm.words.count,
                                         labels: masked.map(\.label), weight: w.mlm * maskedShare)
            terms.mlm = ce.loss
            let grads = cmlm.backward(tape, dLogits: ce.gradient, context: context)
            dMasked = grads.queries
            dFrames = grads.frames
        }
        terms.weigh(w)

        // ---- backward: image side. de = dv / T (+ dL/dF from CMLM)
        let dv = Losses.normalizeBackward(unit: vHat, norms: vNorm, dUnit: dvHat, width: p)
        let de = dFrames ?? Tensor(shape: [frames, p])
        for i in 0..<b { for f in 0..<t { for j in 0..<p { de.data[(i * t + f) * p + j] += dv[i * p + j] / Float(t) } } }
        if let postAdapter, let postSaved { postAdapter.backward(postSaved, de: de, clips: b, frames: t, context: context) }
        let dPooled = Tensor(shape: [frames, d])
        m.vision.projection.backwardInput(de.data, rows: frames, into: dPooled.data, accumulate: false, context: context)
        let dCLS = Tensor(shape: [frames, d])
        m.vision.postLayerNorm.backward(input: cls.data, rows: frames, dy: dPooled.data, into: dCLS.data,
                                        accumulate: false, context: context)
        if let classifier = m.classifier, let gradient = classifierGradient, let vc = vcSaved {
            let dl = Tensor(shape: [b, classifier.outFeatures], values: vc.dLogits)
            classifier.backwardWeights(dl.data, rows: b, input: vc.normed.data, into: gradient, context: context)
            let dn = Tensor(shape: [b, d]), dMean = Tensor(shape: [b, d])
            classifier.backwardInput(dl.data, rows: b, into: dn.data, accumulate: false, context: context)
            if let mask = vc.mask { for j in 0..<(b * d) { dn.data[j] *= mask[j] } }
            m.vision.postLayerNorm.backward(input: vc.mean.data, rows: b, dy: dn.data, into: dMean.data,
                                            accumulate: false, context: context)
            for i in 0..<b { for f in 0..<t { for j in 0..<d { dCLS.data[(i * t + f) * d + j] += dMean.data[i * d + j] / Float(t) } } }
        }
        if let visionTape { vision.backward(visionTape, stream: vs, dOutput: dCLS, context: context) }

        // ---- backward: text side (batch prompts and class prompts)
        if let textTape {
            let dText = Losses.normalizeBackward(unit: tHat, norms: tNorm, dUnit: dtHat, width: p)
            let dEOT = projectBackward(eotRows, dEmbeddings: dText, context: context)
            let dKept = Tensor(shape: [kept.count, dt])
            for (i, k) in eotKept.enumerated() {
                for j in 0..<dt { dKept.data[k * dt + j] += dEOT.data[i * dt + j] }
            }
            if let dMasked {
                for (i, r) in masked.enumerated() { for j in 0..<dt { dKept.data[r.kept * dt + j] += dMasked.data[i * dt + j] } }
            }
            text.backward(textTape, stream: ts, dOutput: dKept, context: context)
        }
        if let classTape {
            let dClass = Losses.normalizeBackward(unit: wHat, norms: wNorm, dUnit: dwHat, width: p)
            let dRows = projectBackward(cs.x, dEmbeddings: dClass, context: context)
            text.backward(classTape, stream: cs, dOutput: dRows, context: context)
        }
        return terms
    }

    /// ln_final(rows) · text_projection: (n, d) → (n, P).
    private func project(_ rows: Tensor, context: ComputeContext) -> Tensor {
        let tower = model.text, n = rows.shape[0], d = rows.shape[1]
        let normed = Tensor(shape: [n, d]), out = Tensor(shape: [n, tower.projectionDim])
        tower.finalLayerNorm(rows.data, rows: n, into: normed.data, context: context)
        tower.projection(normed.data, rows: n, into: out.data, context: context)
        return out
    }

    /// Backward of `project`: dL/drows from dL/dembeddings (n, P).
    private func projectBackward(_ rows: Tensor, dEmbeddings: [Float], context: ComputeContext) -> Tensor {
        let tower = model.text, n = rows.shape[0], d = rows.shape[1]
        let de = Tensor(shape: [n, tower.projectionDim], values: dEmbeddings)
        let dNormed = Tensor(shape: [n, d]), dRows = Tensor(shape: [n, d])
        tower.projection.backwardInput(de.data, rows: n, into: dNormed.data, accumulate: false, context: context)
        tower.finalLayerNorm.backward(input: rows.data, rows: n, dy: dNormed.data, into: dRows.data, accumulate: false,
                                      context: context)
        return dRows
    }
}
