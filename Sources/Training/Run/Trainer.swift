import Foundation
import M2Model
import Ops

/// A training run (`m2clip train`): epochs of AdamW steps over a clip source, evaluation on
/// the validation clips after every epoch, and in `directory` the checkpoint (after every
/// epoch and when asked to stop), `model.m2c` (last), `best.m2c` (best validation top-1),
/// `metrics.jsonl` and `curves.svg`.
public final class Trainer: @unchecked Sendable {
    public enum Progress: Sendable {
        case step(StepRecord)
        case epoch(EpochRecord)
        case checkpoint(path: String, epoch: Int, position: Int)
        case resumed(TrainingState)
    }

    /// One optimizer step (`metrics.jsonl` lines of type "step").
    public struct StepRecord: Codable, Sendable {
        public var type = "step"
        public var epoch: Int
        public var step: Int
        public var totalSteps: Int
        public var learningRate: Float
        public var losses: LossTerms
        public var clips: Int
        public var clipsPerSecond: Double
        /// Share of the step's time spent waiting for clips.
        public var waitFraction: Double
        public var etaSeconds: Double

        enum CodingKeys: String, CodingKey {
            case type, epoch, step, totalSteps = "total_steps", learningRate = "lr", losses, clips
            case clipsPerSecond = "clips_per_s", waitFraction = "wait_fraction", etaSeconds = "eta_s"
        }
    }

    /// One epoch (`metrics.jsonl` lines of type "epoch").
    public struct EpochRecord: Codable, Sendable {
        public var type = "epoch"
        public var epoch: Int
        public var step: Int
        /// Mean loss terms over the epoch's steps.
        public var losses: LossTerms
        public var clips: Int
        public var seconds: Double
        public var waitFraction: Double
        public var validation: EvaluationReport?
        public var best: Bool
        /// The process's peak resident set so far.
        public var peakRSSMB: Double

        enum CodingKeys: String, CodingKey {
            case type, epoch, step, losses, clips, seconds, waitFraction = "wait_fraction", validation, best
            case peakRSSMB = "peak_rss_mb"
        }
    }

    public enum Outcome: Sendable, Equatable {
        case finished
        /// Stopped on request after a step; the checkpoint holds where.
        case stopped(epoch: Int, position: Int)
    }

    public let model: TrainingModel
    public let options: TrainingOptions
    public let baseModel: String
    public let directory: String
    let train: ClipBatchSource
    let validation: ClipBatchSource?
    let context: ComputeContext
    public let optimizer: AdamW
    public let schedule: LearningRateSchedule
    public let stepsPerEpoch: Int
    /// Called on the training thread for every step, epoch and checkpoint.
    public var onProgress: (Progress) -> Void = { _ in }
    private let stopLock = NSLock()
    private var stopRequested = false

    public var checkpointPath: String { directory + "/checkpoint.safetensors" }
    public var lastModelPath: String { directory + "/model.m2c" }
    public var bestModelPath: String { directory + "/best.m2c" }
    public var metricsPath: String { directory + "/metrics.jsonl" }

    public init(model: TrainingModel, baseModel: String, options: TrainingOptions, train: ClipBatchSource,
                validation: ClipBatchSource?, directory: String, context: ComputeContext) throws {
        guard train.clipCount > 0 else { throw TrainingError("the training list has no clips") }
        self.model = model
        self.options = options
        self.baseModel = baseModel
        self.directory = directory
        self.train = train
        self.validation = validation
        self.context = context
        var hyper = AdamW.Hyperparameters()
        hyper.weightDecay = options.weightDecay
        optimizer = AdamW(gradients: model.gradients, hyper: hyper)
        let microBatches = (train.clipCount + options.batch - 1) / options.batch
        stepsPerEpoch = max(1, (microBatches + options.accumulate - 1) / options.accumulate)
        schedule = LearningRateSchedule(peak: options.peakLearningRate,
                                        warmupSteps: Int((options.warmupEpochs * Double(stepsPerEpoch)).rounded()),
                                        totalSteps: options.epochs * stepsPerEpoch)
    }

    /// Asks the run to stop after the step in progress, saving a checkpoint (signal handlers
    /// call this; thread-safe).
    public func requestStop() {
        stopLock.lock()
        stopRequested = true
        stopLock.unlock()
    }

    private var shouldStop: Bool {
        stopLock.lock()
        defer { stopLock.unlock() }
        return stopRequested
    }

    /// Runs to the last epoch or until `requestStop()`; with `resume`, continues from the
    /// directory's checkpoint (which must come from the same options).
    public func run(resume: Bool) throws -> Outcome {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var state = TrainingState(options: options, baseModel: baseModel, trainClips: train.clipCount)
        if resume {
            guard FileManager.default.fileExists(atPath: checkpointPath) else {
                throw TrainingError("--resume: no checkpoint in \(directory) (\(checkpointPath) is missing: the run "
                    + "stopped before its first checkpoint was written); start it again without --resume")
            }
            let saved = try TrainingCheckpoint.readState(path: checkpointPath)
            try check(saved)
            state = try TrainingCheckpoint.restore(path: checkpointPath, into: optimizer)
            onProgress(.resumed(state))
        } else if FileManager.default.fileExists(atPath: checkpointPath) {
            throw TrainingError("\(checkpointPath) exists: pass --resume to continue that run, or choose another output directory")
        }
        let log = try MetricsLog(path: metricsPath, append: resume)
        let totalSteps = schedule.totalSteps
        let runStart = DispatchTime.now().uptimeNanoseconds
        var stepsThisRun = 0
        while state.epoch < options.epochs {
            let epoch = state.epoch
            let epochStart = DispatchTime.now().uptimeNanoseconds
            var sums = LossTerms(), steps = 0, clips = 0, waited = 0.0
            train.start(epoch: epoch, position: state.position)
            while true {
                let stepStart = DispatchTime.now().uptimeNanoseconds
                guard let step = try accumulatedStep(state: state) else { break }
                let rate = schedule.rate(at: state.step)
                optimizer.update(learningRate: rate)
                state.step = optimizer.step
                state.position = step.endPosition
                stepsThisRun += 1
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - stepStart) / 1e9
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - runStart) / 1e9
                let record = StepRecord(
                    epoch: epoch, step: state.step, totalSteps: totalSteps, learningRate: rate, losses: step.losses,
                    clips: step.clips, clipsPerSecond: Double(step.clips) / max(seconds, 1e-9),
                    waitFraction: step.waitSeconds / max(seconds, 1e-9),
                    etaSeconds: elapsed / Double(stepsThisRun) * Double(max(0, totalSteps - state.step)))
                try log.append(record)
                onProgress(.step(record))
                sums.add(step.losses)
                steps += 1
                clips += step.clips
                waited += step.waitSeconds
                if shouldStop {
                    try saveCheckpoint(state)
                    return .stopped(epoch: epoch, position: state.position)
                }
            }
            // ---- end of epoch: label embeddings with the new text adapters, validation, files
            let lastStep = state
            state.epoch = epoch + 1
            state.position = 0
            try model.model.setLabels(model.model.labels, context: context)
            let report = validation.map { Evaluation.run(model: model.model, source: $0, frames: options.frames,
                                                         context: context) }
            let improved = report.map { r in state.bestTop1.map { r.top1 > $0 } ?? true } ?? false
            do {
                try writeModel(to: lastModelPath)
                if improved, let report {
                    try keepLastModelAsBest()
                    state.bestTop1 = report.top1
                    state.bestEpoch = epoch
                }
            } catch {
                // A full disk must not cost the epoch: the checkpoint (a fraction of a model's
                // size) keeps its last step, so --resume only redoes the epoch end.
                throw TrainingError("\(error). " + ((try? saveCheckpoint(lastStep)) != nil
                    ? "The epoch's training is kept in \(checkpointPath): make room and --resume to write the model files."
                    : lastGood(lastStep)))
            }
            try saveCheckpoint(state)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - epochStart) / 1e9
            let record = EpochRecord(epoch: epoch, step: state.step, losses: sums.scaled(by: 1 / Float(max(steps, 1))),
                                     clips: clips, seconds: seconds, waitFraction: waited / max(seconds, 1e-9),
                                     validation: report, best: improved,
                                     peakRSSMB: Double(ProcessStats.peakRSSBytes() ?? 0) / 1_048_576)
            try log.append(record)
            onProgress(.epoch(record))
            try? TrainingCurves.write(metrics: metricsPath, to: directory + "/curves.svg")
            if shouldStop { return .stopped(epoch: state.epoch, position: 0) }
        }
        return .finished
    }

    struct Step {
        var losses: LossTerms
        var clips: Int
        var endPosition: Int
        var waitSeconds: Double
    }

    /// Up to `accumulate` micro-batches and the gradient of all of them as one batch
    /// (exact accumulation, `TrainingModel.accumulateGradients`); nil at the end of the epoch.
    private func accumulatedStep(state: TrainingState) throws -> Step? {
        var batches: [TrainingBatch] = [], sources: [String] = []
        var end = state.position, waited = 0.0
        while batches.count < options.accumulate {
            let waitStart = DispatchTime.now().uptimeNanoseconds
            guard let data = train.nextBatch() else { break }
            waited += Double(DispatchTime.now().uptimeNanoseconds - waitStart) / 1e9
            batches.append(makeBatch(data, seed: Self.seed(.masking, options.seed, state.step, batches.count)))
            sources += data.sources
            end = data.endPosition
        }
        guard !batches.isEmpty else { return nil }
        let terms = model.accumulateGradients(batches, context: context) { k in
            self.options.dropout > 0
                ? Dropout(probability: self.options.dropout,
                          seed: Self.seed(.dropout, self.options.seed, state.step, k)) : nil
        }
        let at = "step \(state.step + 1) (epoch \(state.epoch + 1), clips \(sources.joined(separator: ", ")))"
        guard terms.total.isFinite else {
            throw TrainingError("\(at): the loss is not finite (contrastive \(terms.contrastiveV2T)/\(terms.contrastiveT2V), cmc \(terms.cmc), vc \(terms.vc), mlm \(terms.mlm)); stopped. \(lastGood(state))")
        }
        if let bad = model.gradients.firstNonFinite() {
            throw TrainingError("\(at): the gradient of \(bad) is not finite; stopped. \(lastGood(state))")
        }
        return Step(losses: terms, clips: batches.reduce(0) { $0 + $1.clips }, endPosition: end, waitSeconds: waited)
    }

    private func lastGood(_ state: TrainingState) -> String {
        FileManager.default.fileExists(atPath: checkpointPath)
            ? "The last good checkpoint, \(checkpointPath), is kept." : "No checkpoint was written yet."
    }

    /// The batch the step trains on: each clip's prompt, masked for CMLM (spec §9).
    func makeBatch(_ data: LabelledClips, seed: UInt64) -> TrainingBatch {
        let m = model.model, context = m.configuration.clip.text.maxPositions
        var rng = SplitMix64(seed: seed)
        let masks = options.maskPrompts && !model.mlmWords.isEmpty && model.lossWeights.mlm > 0
        var ids: [[Int32]] = [], mlm: [[Int]] = []
        for label in data.labels {
            let prompt = m.configuration.prompt(for: m.labels[label])
            if masks {
                let r = PromptMasking.mask(prompt, words: model.mlmWords, tokenizer: m.tokenizer, contextLength: context,
                                           rng: &rng)
                ids.append(r.ids)
                mlm.append(r.labels)
            } else {
                let t = m.tokenizer.encode(prompt, contextLength: context)
                ids.append(t + [Int32](repeating: 0, count: context - t.count))
            }
        }
        return TrainingBatch(clips: data.clips, frames: options.frames, pixels: data.pixels, labels: data.labels,
                             inputIDs: ids, mlmLabels: masks ? mlm : nil)
    }

    /// What a step draws at random, each from its own stream.
    enum Draw: UInt64 {
        case masking = 0x6D61_736B_0000_0000 // "mask"
        case dropout = 0x6472_6F70_0000_0000 // "drop"
    }

    /// The seed of `draw` for (step, micro-batch): the same whether the run was resumed or not.
    static func seed(_ draw: Draw, _ base: UInt64, _ step: Int, _ microBatch: Int) -> UInt64 {
        SplitMix64.mix(base, draw.rawValue, UInt64(step), UInt64(microBatch))
    }

    private func check(_ saved: TrainingState) throws {
        guard saved.options == options else {
            let mine = Mirror(reflecting: options).children, theirs = Mirror(reflecting: saved.options).children
            let differ = zip(mine, theirs).filter { "\($0.value)" != "\($1.value)" }
                .map { "\($0.label ?? "?") \($1.value) (now \($0.value))" }
            throw TrainingError("checkpoint \(checkpointPath) was made with other options: \(differ.joined(separator: ", ")); resume with the same ones")
        }
        guard saved.trainClips == train.clipCount else {
            throw TrainingError("checkpoint \(checkpointPath) was made on a training list of \(saved.trainClips) clips, this one has \(train.clipCount)")
        }
    }

    private func saveCheckpoint(_ state: TrainingState) throws {
        try TrainingCheckpoint.write(path: checkpointPath, state: state, optimizer: optimizer)
        onProgress(.checkpoint(path: checkpointPath, epoch: state.epoch, position: state.position))
    }

    /// best.m2c becomes this epoch's model.m2c: a hard link renamed into place (model.m2c is
    /// only ever replaced by rename, never rewritten, so the link keeps this epoch's bytes),
    /// or a second write where the filesystem has no hard links. Atomic either way.
    private func keepLastModelAsBest() throws {
        let temporary = directory + "/.best.m2c.link-\(getpid())"
        unlink(temporary)
        if link(lastModelPath, temporary) == 0 {
            if rename(temporary, bestModelPath) == 0 { return }
            unlink(temporary)
        }
        try writeModel(to: bestModelPath)
    }

    /// The base model with the trained tensors and the new label embeddings.
    public func writeModel(to path: String) throws {
        var replacing: [String: (shape: [Int], values: [Float])] = [:]
        for t in optimizer.state.tensors { replacing[t.name] = (t.shape, t.value) }
        // a VC head trained with its loss is what classify and m2clipd score with by default
        var c = model.model.configuration
        if c.classes > 0 && model.lossWeights.vc > 0 && !c.vcHeadTrained {
            c.vcHeadTrained = true
            model.model.reconfigure(c)
        }
        try ModelFile.write(path: path, base: baseModel, replacing: replacing, model: model.model)
    }
}

extension LossTerms {
    mutating func add(_ other: LossTerms) {
        contrastiveV2T += other.contrastiveV2T
        contrastiveT2V += other.contrastiveT2V
        cmc += other.cmc
        vc += other.vc
        mlm += other.mlm
        total += other.total
    }

    func scaled(by factor: Float) -> LossTerms {
        LossTerms(contrastiveV2T: contrastiveV2T * factor, contrastiveT2V: contrastiveT2V * factor, cmc: cmc * factor,
                  vc: vc * factor, mlm: mlm * factor, total: total * factor)
    }
}
