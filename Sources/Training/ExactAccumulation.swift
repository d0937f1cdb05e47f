import Foundation
import Ops

/// One micro-batch's part of a step over a larger batch, so that K micro-batches give the
/// gradient of the whole batch exactly (the GradCache way): the contrastive loss couples
/// every pair of the batch (its B×B logits), so it is computed once over all the batch's
/// embeddings and its gradient handed to each micro-batch's backward; the per-clip terms
/// (CMC, VC) are weighted by the micro-batch's share of the clips, CMLM by its share of the
/// masked tokens.
public struct MicroBatchShare: Sendable {
    public var contrastiveV2T: Float
    public var contrastiveT2V: Float
    /// dL/dV̂ and dL/dT̂ of this micro-batch's rows, (B_k, P).
    public var dVideoUnit: [Float]
    public var dTextUnit: [Float]
    /// B_k / N.
    public var sampleFraction: Float
    /// This micro-batch's masked tokens / the batch's (0 when none is masked).
    public var maskedFraction: Float
}

extension TrainingModel {
    /// The shares of `batches`, the micro-batches of one step: a forward pass of each (no
    /// tape) for its embeddings, then the contrastive loss over all of them.
    public func microBatchShares(_ batches: [TrainingBatch], context: ComputeContext) -> [MicroBatchShare] {
        let p = model.configuration.clip.projectionDim
        var video: [Float] = [], text: [Float] = [], labels: [Int] = []
        for batch in batches {
            let e = contrastiveEmbeddings(batch, context: context)
            video += e.video
            text += e.text
            labels += batch.labels
        }
        let kl = Losses.contrastive(videoUnit: Losses.normalize(video, width: p).unit,
                                    textUnit: Losses.normalize(text, width: p).unit, labels: labels, width: p,
                                    scale: exp(model.logitScale), weight: lossWeights.contrastive)
        let useMLM = cmlm != nil
        func maskedCount(_ b: TrainingBatch) -> Int {
            guard useMLM, let rows = b.mlmLabels else { return 0 }
            return rows.reduce(0) { $0 + $1.filter { $0 != TrainingBatch.ignoredLabel }.count }
        }
        let totalMasked = batches.reduce(0) { $0 + maskedCount($1) }
        var row = 0
        return batches.map { batch in
            let rows = (row * p)..<((row + batch.clips) * p)
            row += batch.clips
            return MicroBatchShare(contrastiveV2T: kl.v2t, contrastiveT2V: kl.t2v,
                                   dVideoUnit: Array(kl.dVideoUnit[rows]), dTextUnit: Array(kl.dTextUnit[rows]),
                                   sampleFraction: Float(batch.clips) / Float(labels.count),
                                   maskedFraction: totalMasked == 0 ? 0 : Float(maskedCount(batch)) / Float(totalMasked))
        }
    }

    /// The gradient of the whole of `batches` as one batch, a micro-batch's activations at a
    /// time: sets `gradients` and returns the loss terms of the whole batch.
    public func accumulateGradients(_ batches: [TrainingBatch], context: ComputeContext,
                                    dropout: (Int) -> Dropout? = { _ in nil }) -> LossTerms {
        guard batches.count > 1 else {
            return batches.first.map { computeGradients($0, context: context, dropout: dropout(0)) } ?? LossTerms()
        }
        let shares = microBatchShares(batches, context: context)
        var sum: [[Float]]?
        var terms = LossTerms()
        for (k, batch) in batches.enumerated() {
            let t = computeGradients(batch, context: context, dropout: dropout(k), share: shares[k])
            gradients.accumulate(into: &sum)
            let f = shares[k].sampleFraction
            terms.cmc += f * t.cmc
            terms.vc += f * t.vc
            terms.mlm += shares[k].maskedFraction * t.mlm
        }
        terms.contrastiveV2T = shares[0].contrastiveV2T
        terms.contrastiveT2V = shares[0].contrastiveT2V
        terms.weigh(lossWeights)
        gradients.zero()
        if let sum { gradients.add(sum) }
        return terms
    }
}
