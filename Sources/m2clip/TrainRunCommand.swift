import ArgumentParser
import Foundation
import M2Model
import Ops
import Training
import Video

/// `m2clip train` (`train run`): from the user's clip lists to a trained model in DIR.
struct TrainRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Train the adapters and heads of a model on your clips (the default of `m2clip train`).",
        discussion: """
        LIST is an mmaction2 list (`path label` lines, label an index or a name), a CSV \
        (`path,label`) or a directory of class-named subfolders; labels are the model's, or \
        --labels FILE's (the model to train is then written to DIR/base.m2c). DIR gets \
        checkpoint.safetensors (after every epoch and on SIGINT/SIGTERM), model.m2c (last), \
        best.m2c (best validation top-1), metrics.jsonl and curves.svg. --resume continues the \
        run in DIR with the same options.
        """)

    @Option(help: "The fp32 (or fp16/bf16) model file to start from (.m2c; `m2clip convert` makes one with your labels).")
    var model: String

    @Option(help: "A new label set (a CSV with an id,name header, or one label per line): label embeddings rebuilt, the VC head and MLM vocabulary resized (labels and words the model has keep their rows); written to DIR/base.m2c, which training starts from.")
    var labels: String?

    @Option(help: "Training clips: a list file or a directory of class-named folders.")
    var train: String

    @Option(help: "Validation clips (evaluated after every epoch; best.m2c is the best of them).")
    var val: String?

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "Epochs.")
    var epochs = 12

    @Option(help: "Clips per forward/backward.")
    var batch = 4

    @Option(help: "Micro-batches per optimizer step (effective batch = batch × accumulate; exact for every loss).")
    var accumulate = 1

    @Option(help: "Memory budget, e.g. 4G or 3500M: picks the micro-batch (a divisor of batch × accumulate) and the MLP recompute to fit, keeping the effective batch.")
    var maxMemory: String?

    @Flag(help: "Recompute each block's fc1 output in the backward (about a third less activation memory, the same gradients).")
    var recomputeMLP = false

    @Option(help: "Peak learning rate (default: 1e-3 × effective batch / 256).")
    var lr: Float?

    @Option(help: "Warm-up epochs before the cosine decay.")
    var warmupEpochs: Double = 2

    @Option(help: "Frames per clip (default: the model's).")
    var frames: Int?

    @Option(help: "Frame sampling: segments (a random frame from each of T equal segments) or dense:K (every K-th frame from a random start; dense = dense:16).")
    var sampling = "segments"

    @Flag(help: "No horizontal flips (for labels that name a direction).")
    var noFlip = false

    @Flag(help: "Class-balanced sampling: every class equally often per epoch.")
    var balance = false

    @Option(help: "Background threads decoding clips.")
    var workers = 2

    @Option(help: "Random seed (clip order, augmentation, dropout, masked words).")
    var seed: UInt64 = 0

    @Option(help: "Loss weights, e.g. contrastive=1,cmc=1,vc=1,mlm=0.1 (default: the model's).")
    var lossWeights: String?

    @Flag(help: "Continue the run in --out from its checkpoint.")
    var resume = false

    @Flag(help: "Machine-readable progress: one JSON object a line on stdout.")
    var json = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard accumulate >= 1 else { throw ValidationError("--accumulate must be at least 1") }
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        if let lr, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a positive number") }
        if let frames, frames < 1 { throw ValidationError("--frames must be at least 1") }
        guard warmupEpochs >= 0 else { throw ValidationError("--warmup-epochs must be ≥ 0") }
        _ = try ClipOptions.sampling(sampling)
        if let lossWeights { _ = try TrainGradCommand.parseWeights(lossWeights, base: .paper) }
        if let maxMemory, Self.bytes(maxMemory) == nil {
            throw ValidationError("--max-memory must be a size such as 4G, 3500M or 800000K, got \(maxMemory)")
        }
    }

    /// `4G`, `3500M`, `512K` or plain bytes.
    static func bytes(_ text: String) -> Int? {
        let units: [Character: Double] = ["K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
        var digits = text.uppercased()
        if digits.hasSuffix("B") { digits.removeLast() }
        var scale = 1.0
        if let last = digits.last, let unit = units[last] { scale = unit; digits.removeLast() }
        guard let value = Double(digits), value > 0, value.isFinite else { return nil }
        return Int(value * scale)
    }

    func run() throws {
        let context = try engine.makeContext()
        let newLabels = try labels.map { try LabelSet.load(path: $0) }
        if resume, labels == nil, FileManager.default.fileExists(atPath: out + "/base.m2c") {
            throw TrainingError("the run in \(out) was started with --labels (it trains \(out)/base.m2c): resume with the same --labels")
        }
        let loaded = newLabels == nil ? try TrainingModel(modelFile: model, context: context) : nil
        let labelSet = newLabels ?? loaded!.model.labels
        // lists first: a bad list is refused before anything is written
        let trainEntries = try ClipList.read(train, labels: labelSet)
        let valEntries = try val.map { try ClipList.read($0, labels: labelSet) }
        try prepareDirectory()
        let baseModel = try newLabels.map { try relabelledBase($0, context: context) } ?? model
        let trainer = try loaded ?? TrainingModel(modelFile: baseModel, context: context)
        if let lossWeights { trainer.lossWeights = try TrainGradCommand.parseWeights(lossWeights, base: trainer.lossWeights) }
        var options = TrainingOptions()
        options.epochs = epochs
        options.batch = batch
        options.accumulate = accumulate
        trainer.recomputesMLP = recomputeMLP
        let t = frames ?? trainer.model.configuration.frames
        if let maxMemory, let budget = Self.bytes(maxMemory) {
            guard let plan = trainer.plan(budget: budget, effectiveBatch: batch * accumulate, frames: t,
                                          queueClips: (2 * accumulate + 1) * batch, context: context) else {
                throw TrainingError("--max-memory \(maxMemory): not even one clip of \(t) frames fits beside the model (\(Self.megabytes(ProcessStats.rssBytes() ?? 0)) resident); give more memory or fewer --frames")
            }
            options.batch = plan.microBatch
            options.accumulate = plan.accumulate
            trainer.recomputesMLP = plan.recomputesMLP || recomputeMLP
            printError("--max-memory \(maxMemory): micro-batch \(plan.microBatch) × \(plan.accumulate) accumulated\(trainer.recomputesMLP ? ", MLP recomputed" : ""), about \(Self.megabytes(plan.estimatedBytes)) at the peak")
        }
        options.learningRate = lr
        options.warmupEpochs = warmupEpochs
        options.frames = t
        options.seed = seed
        let progress = ProgressPrinter(json: json)
        if trainer.mlmWords.isEmpty && trainer.lossWeights.mlm > 0 {
            progress.warn("\(model) has no CMLM head (MLM vocabulary): training without the CMLM term (convert the model again to get one)")
        }
        let onSkip: @Sendable (String, String) -> Void = { path, reason in progress.warn("skipped \(path): \(reason)") }
        for missing in ClipList.missingFiles(trainEntries + (valEntries ?? [])) {
            progress.warn("\(missing.source): \(missing.path) does not exist (it will be skipped)")
        }
        let sampler = try ClipOptions.sampling(sampling)
        let side = trainer.model.configuration.clip.vision.imageSize
        let trainLoader = try ClipLoader(
            entries: trainEntries, imageSize: side, frames: options.frames, sampling: sampler,
            mode: .train(.init(flip: !noFlip)), batchSize: options.batch, order: balance ? .balanced : .shuffled,
            seed: seed, workers: workers, queueDepth: 2 * options.accumulate + 1, dropLast: false, onSkip: onSkip)
        let valLoader = try valEntries.map {
            try ClipLoader(entries: $0, imageSize: side, frames: options.frames, sampling: sampler,
                                    mode: .eval(views: (1, 1)), batchSize: batch, order: .sequential, seed: seed,
                                    workers: workers, queueDepth: 2, dropLast: false, onSkip: onSkip)
        }
        let run = try Trainer(model: trainer, baseModel: baseModel, options: options, train: trainLoader,
                              validation: valLoader, directory: out, context: context)
        progress.start(run: run, trainClips: trainEntries.count, valClips: valEntries?.count)
        run.onProgress = progress.report
        let signals = StopSignals { progress.warn("stopping after this step (a checkpoint will be saved)…"); run.requestStop() }
        defer { signals.cancel() }
        let outcome = try run.run(resume: resume)
        progress.finish(run: run, outcome: outcome, skipped: trainLoader.stats.clipsSkipped + (valLoader?.stats.clipsSkipped ?? 0))
    }

    static func megabytes(_ bytes: Int) -> String { "\(bytes >> 20) MB" }

    /// DIR/base.m2c: --model for the labels of --labels (written once; --resume checks it has them).
    private func relabelledBase(_ newLabels: [String], context: ComputeContext) throws -> String {
        let path = out + "/base.m2c"
        if resume {
            guard FileManager.default.fileExists(atPath: path) else {
                throw TrainingError("--resume with --labels: \(path) is missing (the run in \(out) was not started with --labels)")
            }
            let saved = try ModelFile.load(path: path, context: context).labels
            guard saved == newLabels else {
                throw TrainingError("--labels \(labels!): \(path) was made for other labels (\(saved.count), this file has \(newLabels.count)); resume with the same label file")
            }
            return path
        }
        let r = try ModelFile.relabel(base: model, to: path, labels: newLabels, seed: seed, context: context)
        var line = "--labels \(labels!): \(newLabels.count) labels, \(r.keptLabels.count) the model had, \(r.newLabels.count) new"
        if r.keptWords + r.newWords > 0 { line += "; MLM vocabulary \(r.keptWords + r.newWords) words, \(r.newWords) new" }
        printError(line + "; training starts from \(path)")
        return path
    }

    /// DIR must be a directory we can write (created when missing), checked before training.
    private func prepareDirectory() throws {
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        } catch {
            throw TrainingError("cannot create the output directory \(out): \(error.localizedDescription)")
        }
        let probe = out + "/.m2clip-write-test"
        guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8)) else {
            throw TrainingError("the output directory \(out) is not writable")
        }
        try? FileManager.default.removeItem(atPath: probe)
    }
}

/// SIGINT and SIGTERM call `handler` once (on a dispatch queue) instead of killing the process.
final class StopSignals {
    private var sources: [DispatchSourceSignal] = []

    init(handler: @escaping @Sendable () -> Void) {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            sources.append(source)
        }
    }

    func cancel() {
        for s in sources { s.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}

/// The live progress line (stderr) or JSON lines (stdout), and the final summary.
final class ProgressPrinter: @unchecked Sendable {
    let json: Bool
    private let lock = NSLock()
    private let live = isatty(STDERR_FILENO) == 1
    private var lineOpen = false

    init(json: Bool) { self.json = json }

    private var warned = Set<String>()

    /// Each warning once (a damaged clip is met again every epoch).
    func warn(_ message: String) {
        lock.lock()
        defer { lock.unlock() }
        guard warned.insert(message).inserted else { return }
        if json {
            emit(["type": "warning", "message": message])
        } else {
            if lineOpen { FileHandle.standardError.write(Data("\n".utf8)); lineOpen = false }
            printError("warning: " + message)
        }
    }

    private func emit<T: Encodable>(_ value: T) {
        try? printJSON(value)
        fflush(nil) // every stream: a reader of the pipe sees each line as it happens
    }

    private func line(_ text: String) {
        if live {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
            lineOpen = true
        } else {
            printError(text)
        }
    }

    func start(run: Trainer, trainClips: Int, valClips: Int?) {
        let o = run.options
        let text = "training \(run.model.trainableParameters) parameters on \(trainClips) clips" +
            (valClips.map { ", validating on \($0)" } ?? "") +
            ": \(o.epochs) epochs × \(run.stepsPerEpoch) steps, batch \(o.batch) × \(o.accumulate), peak lr \(String(format: "%.3g", o.peakLearningRate)) → \(run.directory)"
        if json {
            struct Start: Encodable { var type = "start"; var message: String; var steps_per_epoch: Int; var trainable_parameters: Int }
            emit(Start(message: text, steps_per_epoch: run.stepsPerEpoch, trainable_parameters: run.model.trainableParameters))
        } else {
            printError(text)
        }
    }

    func report(_ event: Trainer.Progress) {
        lock.lock()
        defer { lock.unlock() }
        switch event {
        case .step(let r):
            if json { emit(r); return }
            let l = r.losses
            line(String(format: "epoch %d step %d/%d  loss %.4f (kl %.3f/%.3f cmc %.3f vc %.3f mlm %.3f)  lr %.2e  %.2f clips/s  wait %.0f%%  ETA %@",
                        r.epoch + 1, r.step, r.totalSteps, l.total, l.contrastiveV2T, l.contrastiveT2V, l.cmc, l.vc, l.mlm,
                        r.learningRate, r.clipsPerSecond, 100 * r.waitFraction, Self.duration(r.etaSeconds)))
        case .epoch(let r):
            if json { emit(r); return }
            if lineOpen { FileHandle.standardError.write(Data("\n".utf8)); lineOpen = false }
            var text = String(format: "epoch %d done in %@: mean loss %.4f, %d clips, waited for clips %.0f%% of the time, peak RSS %.0f MB",
                              r.epoch + 1, Self.duration(r.seconds), r.losses.total, r.clips, 100 * r.waitFraction, r.peakRSSMB)
            if let v = r.validation {
                text += String(format: "; validation top-1 %.1f%% top-5 %.1f%% zero-shot %.1f%% mean-class %.1f%%%@",
                               100 * v.top1, 100 * v.top5, 100 * v.zeroShotTop1, 100 * v.meanClassTop1, r.best ? " (best)" : "")
            }
            printError(text)
        case .checkpoint(let path, let epoch, let position):
            if json {
                struct Saved: Encodable { var type = "checkpoint"; var path: String; var epoch: Int; var position: Int }
                emit(Saved(path: path, epoch: epoch, position: position))
            }
        case .resumed(let s):
            let text = "resuming at epoch \(s.epoch + 1), clip \(s.position) of it, after \(s.step) steps"
            if json { emit(["type": "resumed", "message": text]) } else { printError(text) }
        }
    }

    func finish(run: Trainer, outcome: Trainer.Outcome, skipped: Int) {
        let best = FileManager.default.fileExists(atPath: run.bestModelPath)
        let model = best ? run.bestModelPath : run.lastModelPath
        var lines: [String] = []
        switch outcome {
        case .finished: lines.append("finished: last model \(run.lastModelPath)" + (best ? ", best \(run.bestModelPath)" : ""))
        case .stopped(let epoch, let position):
            lines.append("stopped at epoch \(epoch + 1), clip \(position); checkpoint \(run.checkpointPath). Continue with the same command and --resume.")
        }
        if skipped > 0 { lines.append("\(skipped) clip(s) could not be read and were skipped (see the warnings)") }
        if outcome == .finished {
            let int8 = (model as NSString).deletingPathExtension + "-int8.m2c"
            lines.append("quantize: m2clip quantize \(model) --to int8 --out \(int8)")
            lines.append("deploy: set `model: \(int8)` in m2clipd's YAML and `systemctl reload m2clipd@CAMERA`; check: m2clip eval --model \(model) --list VAL --views 3x3")
        }
        if json {
            struct Finish: Encodable { var type = "finish"; var outcome: String; var model: String; var skipped: Int; var message: String }
            emit(Finish(outcome: outcome == .finished ? "finished" : "stopped", model: model, skipped: skipped,
                        message: lines.joined(separator: "\n")))
        } else {
            if lineOpen { FileHandle.standardError.write(Data("\n".utf8)) }
            for l in lines { print(l) }
        }
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
