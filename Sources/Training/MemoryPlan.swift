import Foundation
import M2Model
import Ops

/// What a step keeps, measured, and the micro-batch that fits a memory budget
/// (`m2clip train --max-memory`).
public struct MemoryPlan: Sendable, Equatable {
    public var microBatch: Int
    public var accumulate: Int
    public var recomputesMLP: Bool
    /// The estimate of the run's peak, bytes.
    public var estimatedBytes: Int
}

extension TrainingModel {
    /// Bytes of the activations one clip of `frames` frames leaves on the tapes (both towers,
    /// the prompt's included), counted on a one-clip probe forward: without and with the MLP
    /// recompute.
    public func activationBytesPerClip(frames: Int, context: ComputeContext) -> (kept: Int, recomputed: Int) {
        let batch = TrainingBatch.synthetic(for: self, labels: [0], frames: frames, seed: 1)
        let saved = recomputesMLP
        defer { recomputesMLP = saved }
        func probe(_ recompute: Bool) -> Int {
            recomputesMLP = recompute
            let image = imagePass(batch, taped: true, context: context)
            let text = textPass(batch, useMLM: cmlm != nil && batch.mlmLabels != nil, taped: true, context: context)
            var seen = Set<ObjectIdentifier>()
            return TensorCensus.bytes(in: image.tape as Any, seen: &seen) + TensorCensus.bytes(in: text.tape as Any, seen: &seen)
                + 4 * (image.cls.count + image.frames.count + text.eotRows.count)
        }
        return (probe(false), probe(true))
    }

    /// The largest micro-batch (a divisor of `effectiveBatch`) whose step fits `budget` bytes
    /// beside what is resident now, the optimizer's state (two moments and a copy of every
    /// trainable parameter), the accumulated gradients and the loader's queue; the MLP
    /// recompute only when no micro-batch fits without it. Saved activations get 25 % on top
    /// for the backward's transient buffers. Nil: not even one clip fits.
    /// - Parameter resident: the bytes resident before training (default: the process's RSS
    ///   after the probe).
    public func plan(budget: Int, effectiveBatch: Int, frames: Int, queueClips: Int, resident: Int? = nil,
                     context: ComputeContext) -> MemoryPlan? {
        let side = model.configuration.clip.vision.imageSize, channels = model.configuration.clip.vision.channels
        let clipPixels = 4 * frames * channels * side * side
        let perClip = activationBytesPerClip(frames: frames, context: context)
        let fixed = (resident ?? ProcessStats.rssBytes() ?? 0) + 4 * trainableParameters * 4 + queueClips * clipPixels
        for recompute in [false, true] {
            let each = (recompute ? perClip.recomputed : perClip.kept) * 5 / 4 + clipPixels
            for b in stride(from: effectiveBatch, through: 1, by: -1) where effectiveBatch % b == 0 {
                let total = fixed + b * each
                if total <= budget {
                    return MemoryPlan(microBatch: b, accumulate: effectiveBatch / b, recomputesMLP: recompute,
                                      estimatedBytes: total)
                }
            }
        }
        return nil
    }
}

/// Counts the bytes of the tensors an object graph holds (the tapes), each tensor once.
enum TensorCensus {
    static func bytes(in value: Any, seen: inout Set<ObjectIdentifier>) -> Int {
        if let t = value as? Tensor {
            return seen.insert(ObjectIdentifier(t)).inserted ? 4 * t.count : 0
        }
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .class, let object = value as AnyObject? {
            guard seen.insert(ObjectIdentifier(object)).inserted else { return 0 }
        }
        var total = 0
        var m: Mirror? = mirror
        while let current = m {
            for child in current.children { total += bytes(in: child.value, seen: &seen) }
            m = current.superclassMirror
        }
        return total
    }
}
