import Foundation
import Ops

extension ModelFile {
    /// What `relabel` kept and what starts fresh.
    public struct Relabelling: Sendable, Equatable {
        /// Labels of the new set the model already had (their VC head rows are kept).
        public var keptLabels: [String]
        /// Labels the model did not have (their VC head rows start as PyTorch's Linear default).
        public var newLabels: [String]
        /// MLM vocabulary words kept and new (empty without a CMLM head).
        public var keptWords: Int
        public var newWords: Int
    }

    /// Writes `base` for a new label set, ready to be trained (`m2clip train --labels`): the
    /// label text embeddings are recomputed with the model's text adapters; the VC head gets
    /// one row per new label and the MLM decoder one row per word of the new labels' prompts
    /// (spec §9's vocabulary) — a row whose label or word the model already had keeps its
    /// trained values, a new one starts as the fresh model's (`m2clip convert`) would,
    /// drawn from `seed`. Every other tensor is copied byte for byte. Atomic, like every write.
    public static func relabel(base: String, to path: String, labels: [String], seed: UInt64,
                               context: ComputeContext) throws -> Relabelling {
        guard !labels.isEmpty else { throw CheckpointError(file: base, "the new label set is empty") }
        if let twice = Dictionary(grouping: labels, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw CheckpointError(file: base, "the new label set has \"\(twice)\" twice")
        }
        let model = try load(path: base, context: context)
        let old = model.configuration, oldLabels = model.labels
        let reader = try WeightReader(path: base)
        reader.widensSixteenBit = true
        var fresh = Conversion.FreshWeights(store: TensorStore(origin: base), seed: seed)
        /// Rows of a (rows, width) weight and its bias for `keys`, kept where `oldKeys` has the key.
        func rows(_ weight: String, _ bias: String, oldKeys: [String], keys: [String], width: Int,
                  freshBias: Bool) throws -> [String: (shape: [Int], values: [Float])] {
            let w = try reader.floats(weight, shape: [oldKeys.count, width])
            let b = try reader.floats(bias, shape: [oldKeys.count])
            let index = Dictionary(oldKeys.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            let bound = 1 / Float(width).squareRoot()
            var newW: [Float] = [], newB: [Float] = []
            for key in keys {
                if let i = index[key] {
                    newW += w[i * width..<(i + 1) * width]
                    newB.append(b[i])
                } else {
                    newW += fresh.uniform(width, bound: bound)
                    newB.append(freshBias ? fresh.uniform(1, bound: bound)[0] : 0)
                }
            }
            return [weight: ([keys.count, width], newW), bias: ([keys.count], newB)]
        }

        var c = old
        var replacing: [String: (shape: [Int], values: [Float])] = [:]
        let known = Set(oldLabels)
        var result = Relabelling(keptLabels: labels.filter { known.contains($0) },
                                 newLabels: labels.filter { !known.contains($0) }, keptWords: 0, newWords: 0)
        if old.classes > 0 {
            guard old.classes == oldLabels.count else {
                throw CheckpointError(file: base, tensor: M2CLIPNames.videoClassifier.weight,
                                      "the VC head has \(old.classes) classes but the file \(oldLabels.count) labels (set with `m2clip labels set`); its rows cannot be matched to labels")
            }
            let name = M2CLIPNames.videoClassifier
            replacing.merge(try rows(name.weight, name.bias, oldKeys: oldLabels, keys: labels,
                                     width: old.clip.vision.encoder.hiddenSize, freshBias: true)) { $1 }
            c.classes = labels.count
            c.vcHeadTrained = old.vcHeadTrained && result.newLabels.isEmpty
        }
        if let cmlm = old.cmlm {
            let words = MLMVocabulary.words(labels: labels, promptTemplate: old.promptTemplate)
            typealias H = M2CLIPNames.MLMHead
            replacing.merge(try rows(H.decoderWeight, H.decoderBias, oldKeys: cmlm.words, keys: words,
                                     width: old.clip.text.encoder.hiddenSize, freshBias: false)) { $1 }
            c.cmlm?.words = words
            let oldWords = Set(cmlm.words)
            result.keptWords = words.filter { oldWords.contains($0) }.count
            result.newWords = words.count - result.keptWords
        }
        try model.setLabels(labels, context: context)
        model.reconfigure(c)

        try write(path: path, base: base, replacing: replacing, reshaping: true, model: model)
        return result
    }
}
