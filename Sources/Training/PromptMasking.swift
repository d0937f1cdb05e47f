import Foundation
import M2Model
import Ops

/// CMLM's masked prompts (spec §9): about 20 % of the prompt's words (at least one, chosen at
/// random) become the word "mask"; every CLIP token of a masked word is labelled with that
/// word's index in the MLM vocabulary, −100 elsewhere.
public enum PromptMasking {
    public static let maskWord = "mask"
    public static let fraction = 0.2

    /// Token ids (zero padded to `contextLength`) and MLM labels of `prompt`. Words outside
    /// `words` are never masked; with no maskable word the labels are all −100.
    public static func mask(_ prompt: String, words: [String], tokenizer: CLIPTokenizer, contextLength: Int,
                            rng: inout SplitMix64) -> (ids: [Int32], labels: [Int]) {
        let index = Dictionary(words.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        let split = prompt.lowercased().split(whereSeparator: \.isWhitespace).map(String.init)
        let candidates = split.indices.filter { index[split[$0]] != nil }
        var chosen = Set<Int>()
        if !candidates.isEmpty {
            let count = max(1, Int((Double(split.count) * fraction).rounded()))
            var pool = candidates
            while chosen.count < min(count, candidates.count) {
                let k = Int(rng.next() % UInt64(pool.count))
                chosen.insert(pool.remove(at: k))
            }
        }
        let bounds = tokenizer.encode("", contextLength: contextLength) // [SOT, EOT]
        var ids: [Int32] = [bounds[0]]
        var labels = [Int](repeating: TrainingBatch.ignoredLabel, count: contextLength)
        for (w, word) in split.enumerated() {
            let pieces = tokenizer.encode(chosen.contains(w) ? maskWord : word, contextLength: contextLength)
                .dropFirst().dropLast()
            for piece in pieces where ids.count < contextLength - 1 {
                if chosen.contains(w) { labels[ids.count] = index[word]! }
                ids.append(piece)
            }
        }
        ids.append(bounds[1])
        return (ids + [Int32](repeating: 0, count: contextLength - ids.count), labels)
    }
}

extension TrainingBatch {
    /// A batch of random pixels and masked prompts of the given labels (benchmarks, tests,
    /// `m2clip train grad --synthetic`): what a real step costs, on meaningless data.
    public static func synthetic(for trainer: TrainingModel, labels: [Int], frames: Int, seed: UInt64,
                                 masked: Bool = true) -> TrainingBatch {
        let m = trainer.model, c = m.configuration.clip
        var rng = SplitMix64(seed: seed)
        let side = c.vision.imageSize
        let pixels = (0..<(labels.count * frames * c.vision.channels * side * side)).map { _ in rng.nextNormal() }
        var ids: [[Int32]] = [], mlm: [[Int]] = []
        for label in labels {
            let prompt = m.configuration.prompt(for: m.labels[label])
            if masked && !trainer.mlmWords.isEmpty {
                let r = PromptMasking.mask(prompt, words: trainer.mlmWords, tokenizer: m.tokenizer,
                                           contextLength: c.text.maxPositions, rng: &rng)
                ids.append(r.ids)
                mlm.append(r.labels)
            } else {
                let t = m.tokenizer.encode(prompt, contextLength: c.text.maxPositions)
                ids.append(t + [Int32](repeating: 0, count: c.text.maxPositions - t.count))
            }
        }
        let useMLM = masked && !trainer.mlmWords.isEmpty
        return TrainingBatch(clips: labels.count, frames: frames, pixels: pixels, labels: labels, inputIDs: ids,
                             mlmLabels: useMLM ? mlm : nil)
    }
}
