import Foundation
import M2Model
import Ops

/// Accuracy of a model on labelled clips (`m2clip eval`, and the trainer after every epoch):
/// top-1 / top-5 for the VC head and zero-shot, per class, mean over classes, and the
/// confusion matrix. Views of a clip are averaged after a softmax each (spec §6).
public struct EvaluationReport: Codable, Sendable {
    public struct PerClass: Codable, Sendable {
        public var label: String
        public var clips: Int
        public var top1: Double
    }

    /// The head the headline figures use: "vc" when the model has a VC head over its labels,
    /// else "zero_shot".
    public var head: String
    public var clips: Int
    public var top1: Double
    public var top5: Double
    public var zeroShotTop1: Double
    public var zeroShotTop5: Double
    /// Mean over the classes that have clips of the per-class top-1.
    public var meanClassTop1: Double
    public var perClass: [PerClass]
    /// confusion[true][predicted], the headline head.
    public var confusion: [[Int]]

    enum CodingKeys: String, CodingKey {
        case head, clips, top1, top5, zeroShotTop1 = "zero_shot_top1", zeroShotTop5 = "zero_shot_top5"
        case meanClassTop1 = "mean_class_top1", perClass = "per_class", confusion
    }

    /// The confusion matrix as CSV: a header row of predicted labels, one row per true label.
    public func confusionCSV() -> String {
        func field(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
                ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        let labels = perClass.map(\.label)
        var lines = ["true\\predicted," + labels.map(field).joined(separator: ",")]
        for (i, row) in confusion.enumerated() {
            lines.append(field(labels[i]) + "," + row.map(String.init).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

public enum Evaluation {
    /// Runs `model` on every clip `source` gives in one pass (epoch 0 from its start).
    /// - Parameter frames: T of every view.
    public static func run(model: M2CLIPModel, source: ClipBatchSource, frames: Int,
                           context: ComputeContext) -> EvaluationReport {
        let classes = model.labels.count
        let useVC = model.classifier.map { $0.outFeatures == classes } ?? false
        var counts = Counts(classes: classes)
        source.start(epoch: 0, position: 0)
        while let batch = source.nextBatch() {
            let b = batch.clips, v = batch.views
            let outputs = batch.pixels.withUnsafeBufferPointer {
                model(pixels: $0.baseAddress!, clips: b * v, frames: frames, context: context)
            }
            for i in 0..<b {
                var vc = [Float](repeating: 0, count: classes), zs = [Float](repeating: 0, count: classes)
                for k in 0..<v {
                    let out = outputs[i * v + k]
                    if useVC, let logits = out.vcLogits {
                        for (c, p) in softmax(logits).enumerated() { vc[c] += p / Float(v) }
                    }
                    for (c, p) in out.labelScores.enumerated() { zs[c] += p / Float(v) }
                }
                counts.add(label: batch.labels[i], primary: useVC ? vc : zs, zeroShot: zs)
            }
        }
        return counts.report(labels: model.labels, head: useVC ? "vc" : "zero_shot")
    }

    struct Counts {
        let classes: Int
        var clips = 0, top1 = 0, top5 = 0, zsTop1 = 0, zsTop5 = 0
        var confusion: [[Int]]

        init(classes: Int) {
            self.classes = classes
            confusion = Array(repeating: Array(repeating: 0, count: classes), count: classes)
        }

        /// Ranks ties by index, as argmax does.
        static func rank(_ scores: [Float]) -> [Int] {
            scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        }

        mutating func add(label: Int, primary: [Float], zeroShot: [Float]) {
            clips += 1
            let p = Self.rank(primary), z = Self.rank(zeroShot)
            if p.first == label { top1 += 1 }
            if p.prefix(5).contains(label) { top5 += 1 }
            if z.first == label { zsTop1 += 1 }
            if z.prefix(5).contains(label) { zsTop5 += 1 }
            if let predicted = p.first { confusion[label][predicted] += 1 }
        }

        func report(labels: [String], head: String) -> EvaluationReport {
            func share(_ n: Int) -> Double { clips == 0 ? 0 : Double(n) / Double(clips) }
            let perClass = labels.enumerated().map { c, label -> EvaluationReport.PerClass in
                let n = confusion[c].reduce(0, +)
                return .init(label: label, clips: n, top1: n == 0 ? 0 : Double(confusion[c][c]) / Double(n))
            }
            let present = perClass.filter { $0.clips > 0 }
            let meanClass = present.isEmpty ? 0 : present.map(\.top1).reduce(0, +) / Double(present.count)
            return EvaluationReport(head: head, clips: clips, top1: share(top1), top5: share(top5),
                                    zeroShotTop1: share(zsTop1), zeroShotTop5: share(zsTop5),
                                    meanClassTop1: meanClass, perClass: perClass, confusion: confusion)
        }
    }
}
