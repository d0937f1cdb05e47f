import ArgumentParser
import Foundation
import M2Model
import Ops
import Training

/// `m2clip train`: the trainer's commands. `run` (the default) trains on the user's clips;
/// `grad` runs one forward and backward on a batch file and writes the gradients (the oracle
/// check and the step benchmark).
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train M²-CLIP's adapters and heads on the CPU.",
        subcommands: [TrainRunCommand.self, TrainGradCommand.self],
        defaultSubcommand: TrainRunCommand.self)
}

struct TrainGradCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grad",
        abstract: "One deterministic forward + backward (dropout off) on a batch: the loss terms and the gradient of the total loss for every trainable parameter, under the release's names.",
        discussion: """
        BATCH is a safetensors file with pixel_values f32 (B, T, 3, H, W) already CLIP-normalised, \
        labels i64 (B), input_ids i64 (B, 77) the per-sample prompts (masked where masked), and \
        optionally mlm_labels i64 (B, 77): the MLM word index at masked token positions, -100 \
        elsewhere (absent: no CMLM term).
        """)

    @Option(help: "An fp32 (or fp16/bf16) M²-CLIP model file (.m2c).")
    var model: String

    @Option(help: "The batch (safetensors).")
    var batch: String

    @Option(help: "Write the gradients here (safetensors, release names).")
    var out: String?

    @Option(help: "Loss weights, e.g. contrastive=1,cmc=1,vc=1,mlm=0.1 (default: the model's, else the paper's).")
    var lossWeights: String?

    @Option(help: "Time this many steps after one warm-up step.")
    var iterations = 1

    @Flag(help: "Recompute each block's fc1 output in the backward instead of keeping it: the same gradients, about a third less activation memory, one more fc1 GEMM a block.")
    var recomputeMLP = false

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1, got \(iterations)") }
        if let lossWeights { _ = try Self.parseWeights(lossWeights, base: .paper) }
    }

    /// `name=value` pairs over `base`; names are the four loss weights.
    static func parseWeights(_ text: String, base: LossWeights) throws -> LossWeights {
        var w = base
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let value = Float(parts[1]), value.isFinite, value >= 0 else {
                throw ValidationError("--loss-weights: '\(item)' is not name=value with a finite value ≥ 0")
            }
            switch parts[0] {
            case "contrastive": w.contrastive = value
            case "cmc": w.cmc = value
            case "vc": w.vc = value
            case "mlm": w.mlm = value
            default: throw ValidationError("--loss-weights: unknown loss '\(parts[0])' (contrastive, cmc, vc, mlm)")
            }
        }
        return w
    }

    struct Report: Encodable {
        var losses: LossTerms
        var stepMsMedian: Double
        var stepMs: [Double]
        var peakRSSMB: Double
        var trainableParameters: Int
        var kernels: String
        var threads: Int
        var clips: Int
        var frames: Int
        var gradients: String?

        enum CodingKeys: String, CodingKey {
            case losses, stepMs = "step_ms", stepMsMedian = "step_ms_median", peakRSSMB = "peak_rss_mb"
            case trainableParameters = "trainable_parameters", kernels, threads, clips, frames, gradients
        }
    }

    func run() throws {
        let context = try engine.makeContext()
        let trainer = try TrainingModel(modelFile: model, context: context)
        if let lossWeights { trainer.lossWeights = try Self.parseWeights(lossWeights, base: trainer.lossWeights) }
        trainer.recomputesMLP = recomputeMLP
        let data = try TrainingBatch.read(path: batch, for: trainer)
        if trainer.lossWeights.mlm > 0 && data.mlmLabels == nil {
            printError(trainer.mlmWords.isEmpty
                ? "warning: \(model) has no CMLM head: no CMLM term in this step"
                : "warning: \(batch) has no mlm_labels: no CMLM term in this step")
        }
        var losses = trainer.computeGradients(data, context: context) // warm-up (and the result)
        var times: [Double] = []
        if iterations > 1 || json {
            for _ in 0..<iterations {
                let start = DispatchTime.now().uptimeNanoseconds
                losses = trainer.computeGradients(data, context: context)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
        }
        if let bad = trainer.gradients.firstNonFinite() {
            throw TrainingError("\(batch): the gradient of \(bad) is not finite (losses: total \(losses.total)); nothing written")
        }
        if let out {
            try trainer.gradients.write(to: out, metadata: ["model": model, "batch": batch])
        }
        let sorted = times.sorted()
        let report = Report(losses: losses, stepMsMedian: sorted.isEmpty ? 0 : ClipBenchmark.percentile(sorted, 0.5),
                            stepMs: times,
                            peakRSSMB: ProcessStats.peakRSSBytes().map { Double($0) / 1_048_576 } ?? 0,
                            trainableParameters: trainer.trainableParameters, kernels: context.kernelName,
                            threads: context.threads, clips: data.clips, frames: data.frames, gradients: out)
        if json {
            try printJSON(report)
            return
        }
        print(String(format: "losses: contrastive v2t %.6f t2v %.6f, cmc %.6f, vc %.6f, mlm %.6f, total %.6f",
                     losses.contrastiveV2T, losses.contrastiveT2V, losses.cmc, losses.vc, losses.mlm, losses.total))
        print("\(report.trainableParameters) trainable parameters, batch \(data.clips) × \(data.frames) frames, kernels \(report.kernels), \(report.threads) threads")
        if !times.isEmpty {
            print(String(format: "step: median %.1f ms over %d steps; peak RSS %.0f MB", report.stepMsMedian, times.count, report.peakRSSMB))
        }
        if let out { print("gradients → \(out)") }
    }
}
