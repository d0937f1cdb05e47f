import ArgumentParser
import Foundation
import M2Model
import Training
import Video

/// `m2clip eval`: accuracy of a model on a labelled list.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Top-1/top-5 of the VC head and zero-shot, per-class accuracy and a confusion matrix on labelled clips.",
        discussion: """
        LIST as for `m2clip train` (mmaction2 `path label` lines, CSV `path,label`, or class-named \
        folders). Views are averaged after a softmax each. Unreadable clips are skipped with a \
        warning and counted.
        """)

    @Option(help: "A model file (.m2c), any precision.")
    var model: String

    @Option(help: "Labelled clips: a list file or a directory of class-named folders.")
    var list: String

    @Option(help: "Views: temporal clips x spatial crops, e.g. 1x1 or 3x3.")
    var views = "1x1"

    @Option(help: "Frames per clip (default: the model's).")
    var frames: Int?

    @Option(help: "Frame sampling: segments or dense:K.")
    var sampling = "segments"

    @Option(help: "Clips per forward.")
    var batch = 4

    @Option(help: "Background threads decoding clips.")
    var workers = 2

    @Option(help: "Write the confusion matrix here (CSV: true labels down, predicted across).")
    var confusion: String?

    @Flag(help: "Print JSON (top1, top5, zero_shot_top1, per_class, confusion, ...).")
    var json = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        _ = try ClipOptions.views(views)
        _ = try ClipOptions.sampling(sampling)
        guard batch >= 1, workers >= 1 else { throw ValidationError("--batch and --workers must be at least 1") }
        if let frames, frames < 1 { throw ValidationError("--frames must be at least 1") }
    }

    struct Output: Encodable {
        var report: EvaluationReport
        var skipped: Int
        var views: String
        func encode(to encoder: Encoder) throws {
            try report.encode(to: encoder)
            enum Keys: String, CodingKey { case skipped, views }
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(skipped, forKey: .skipped)
            try c.encode(views, forKey: .views)
        }
    }

    func run() throws {
        let context = try engine.makeContext()
        let m2clip = try ModelFile.load(path: model, context: context)
        let entries = try ClipList.read(list, labels: m2clip.labels)
        for missing in ClipList.missingFiles(entries) {
            printError("warning: \(missing.source): \(missing.path) does not exist (it will be skipped)")
        }
        let t = frames ?? m2clip.configuration.frames
        let source = try ClipLoader(
            entries: entries, imageSize: m2clip.configuration.clip.vision.imageSize, frames: t,
            sampling: try ClipOptions.sampling(sampling), mode: .eval(views: try ClipOptions.views(views)),
            batchSize: batch, order: .sequential, seed: 0, workers: workers, queueDepth: 2, dropLast: false,
            onSkip: { path, reason in printError("warning: skipped \(path): \(reason)") })
        let report = Evaluation.run(model: m2clip, source: source, frames: t, context: context)
        if let confusion {
            do {
                try report.confusionCSV().write(toFile: confusion, atomically: true, encoding: .utf8)
            } catch {
                throw TrainingError("cannot write \(confusion): \(error.localizedDescription)")
            }
        }
        let skipped = source.stats.clipsSkipped
        if json {
            try printJSON(Output(report: report, skipped: skipped, views: views))
            return
        }
        print(String(format: "%d clips (%@ views, %@ head)%@: top-1 %.2f%%  top-5 %.2f%%  zero-shot top-1 %.2f%%  mean-class top-1 %.2f%%",
                     report.clips, views, report.head, skipped > 0 ? ", \(skipped) skipped" : "", 100 * report.top1,
                     100 * report.top5, 100 * report.zeroShotTop1, 100 * report.meanClassTop1))
        for c in report.perClass where c.clips > 0 {
            print(String(format: "  %6.2f%%  %4d  ", 100 * c.top1, c.clips) + c.label)
        }
        if let confusion { print("confusion matrix → \(confusion)") }
    }
}
