import Foundation
import Testing
import Ops
import SafeTensors
@testable import M2Model
@testable import Training

/// Clips held in memory (generated pixels), in a shuffled order per epoch that is a function
/// of the seed and the epoch, as the clip loader's.
final class MemoryClips: ClipBatchSource, @unchecked Sendable {
    let clips: [[Float]] // each (T, 3, S, S)
    let labels: [Int]
    let batch: Int
    let shuffles: Bool
    let seed: UInt64
    /// Overrides the pixels of clip `index` (a non-finite clip, say).
    var poisoned: [Int: [Float]] = [:]
    private var order: [Int] = []
    private var position = 0

    init(clips: [[Float]], labels: [Int], batch: Int, shuffles: Bool, seed: UInt64 = 7) {
        self.clips = clips
        self.labels = labels
        self.batch = batch
        self.shuffles = shuffles
        self.seed = seed
    }

    var clipCount: Int { clips.count }

    func start(epoch: Int, position: Int) {
        order = Array(clips.indices)
        if shuffles {
            var rng = SplitMix64(seed: seed &+ UInt64(epoch) &* 1_000_003)
            order.shuffle(using: &rng)
        }
        self.position = position
    }

    func nextBatch() -> LabelledClips? {
        guard position < order.count else { return nil }
        let chosen = order[position..<min(order.count, position + batch)]
        position += chosen.count
        return LabelledClips(pixels: chosen.flatMap { poisoned[$0] ?? clips[$0] }, labels: chosen.map { labels[$0] },
                             sources: chosen.map { "clip\($0)" }, endPosition: position)
    }
}

/// Generated clips where only frame order tells the classes apart: a bright square moving
/// right (label 1) or, the exact reverse of such a clip, left (label 0).
enum MotionClips {
    static let side = 32, frames = 8

    /// `pairs` right-moving clips and their reverses, alternating labels 1, 0.
    static func make(pairs: Int, seed: UInt64) -> (clips: [[Float]], labels: [Int]) {
        var rng = SplitMix64(seed: seed)
        var clips: [[Float]] = [], labels: [Int] = []
        let square = 8, stride = 3
        for _ in 0..<pairs {
            let x0 = Int(rng.next() % UInt64(side - square - stride * (frames - 1) + 1))
            let y0 = Int(rng.next() % UInt64(side - square + 1))
            let colour = (0..<3).map { _ in 0.8 + Float(rng.next() % 1000) / 1000 }
            var right = [[Float]]()
            for t in 0..<frames {
                var frame = [Float](repeating: -1, count: 3 * side * side) // (3, S, S)
                for c in 0..<3 {
                    for y in y0..<(y0 + square) {
                        for x in (x0 + stride * t)..<(x0 + stride * t + square) { frame[(c * side + y) * side + x] = colour[c] }
                    }
                }
                right.append(frame)
            }
            clips.append(right.flatMap { $0 })
            labels.append(1)
            clips.append(right.reversed().flatMap { $0 })
            labels.append(0)
        }
        return (clips, labels)
    }
}

@Suite struct TrainerTests {
    static let labels = ["moving left", "moving right"]

    /// A tiny untrained M²-CLIP (random CLIP, fresh adapters) with TED-Adapters before the FFN of
    /// both blocks, or none.
    static func modelFile(in directory: String, ted: Bool, seed: UInt64 = 11) throws -> String {
        let clip = directory + "/clip"
        try RandomCheckpoint.write(configuration: RandomCheckpoint.Preset.tiny.configuration, to: clip, seed: seed)
        let file = directory + (ted ? "/ted.m2c" : "/plain.m2c")
        try Conversion.convert(.huggingFace(directory: clip),
                               options: .init(labels: labels, preset: .k400, tedLayers: ted ? [0, 1] : [],
                                              frames: MotionClips.frames, seed: seed),
                               output: file, context: try ComputeContext(threads: 1))
        return file
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "m2clip-trainer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func options(epochs: Int) -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = epochs
        o.batch = 8
        o.frames = MotionClips.frames
        o.learningRate = 1e-2
        o.warmupEpochs = 1
        return o
    }

    static func trainer(model file: String, options: TrainingOptions, train: ClipBatchSource,
                        validation: ClipBatchSource?, out: String, context: ComputeContext) throws -> Trainer {
        let model = try TrainingModel(modelFile: file, context: context)
        return try Trainer(model: model, baseModel: file, options: options, train: train, validation: validation,
                           directory: out, context: context)
    }

    @Test func temporalAdaptersLearnTheDirectionThatAveragedFramesCannotSee() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ComputeContext(threads: 2)
        let train = MotionClips.make(pairs: 24, seed: 1), held = MotionClips.make(pairs: 16, seed: 2)
        var results: [Bool: EvaluationReport] = [:]
        for ted in [true, false] {
            let file = try Self.modelFile(in: directory, ted: ted)
            let out = directory + (ted ? "/run-ted" : "/run-plain")
            let trainer = try Self.trainer(
                model: file, options: Self.options(epochs: 6),
                train: MemoryClips(clips: train.clips, labels: train.labels, batch: 8, shuffles: true),
                validation: MemoryClips(clips: held.clips, labels: held.labels, batch: 8, shuffles: false),
                out: out, context: context)
            var epochs: [Trainer.EpochRecord] = []
            trainer.onProgress = { if case .epoch(let r) = $0 { epochs.append(r) } }
            #expect(try trainer.run(resume: false) == .finished)
            let last = try #require(epochs.last?.validation)
            print("[trainer] \(ted ? "TED" : "no TED"): held-out top-1 by epoch \(epochs.map { String(format: "%.2f", $0.validation!.top1) }), losses first \(epochs.first!.losses.total) last \(epochs.last!.losses.total)")
            results[ted] = last
            if ted {
                // every loss term falls, CMLM's included
                let first = epochs.first!.losses, final = epochs.last!.losses
                for (name, key) in [("contrastive v2t", \LossTerms.contrastiveV2T), ("contrastive t2v", \.contrastiveT2V),
                                    ("cmc", \.cmc), ("vc", \.vc), ("mlm", \.mlm)] as [(String, KeyPath<LossTerms, Float>)] {
                    #expect(final[keyPath: key] < 0.8 * first[keyPath: key],
                            "\(name): first epoch \(first[keyPath: key]), last \(final[keyPath: key])")
                }
                #expect(first.mlm > 0)
            }
            // the files a run leaves
            for name in ["checkpoint.safetensors", "model.m2c", "best.m2c", "metrics.jsonl", "curves.svg"] {
                #expect(FileManager.default.fileExists(atPath: out + "/" + name), "\(name) written")
            }
        }
        #expect(try #require(results[true]).head == "vc")
        #expect(try #require(results[true]).top1 >= 0.95, "with TED-Adapters")
        // Averaged frames are the same for a clip and its reverse: every pair gets one answer.
        #expect(try #require(results[false]).top1 == 0.5, "without TED-Adapters: chance")
    }

    /// A run stopped mid-epoch and resumed from its checkpoint ends with the same weights, bit
    /// for bit, as the run that went through.
    @Test func resumedRunEqualsTheUninterruptedOne() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ComputeContext(threads: 2)
        let file = try Self.modelFile(in: directory, ted: true)
        let data = MotionClips.make(pairs: 12, seed: 3) // 24 clips: 3 steps an epoch
        // micro-batches of 4, two a step (exact accumulation): 3 steps an epoch
        func source() -> MemoryClips { MemoryClips(clips: data.clips, labels: data.labels, batch: 4, shuffles: true) }
        var options = Self.options(epochs: 3)
        options.batch = 4
        options.accumulate = 2

        let straight = try Self.trainer(model: file, options: options, train: source(), validation: nil,
                                        out: directory + "/straight", context: context)
        #expect(try straight.run(resume: false) == .finished)

        let interrupted = try Self.trainer(model: file, options: options, train: source(), validation: nil,
                                           out: directory + "/interrupted", context: context)
        interrupted.onProgress = { if case .step(let r) = $0, r.step == 5 { interrupted.requestStop() } }
        #expect(try interrupted.run(resume: false) == .stopped(epoch: 1, position: 16))
        let saved = try TrainingCheckpoint.readState(path: interrupted.checkpointPath)
        #expect(saved.step == 5 && saved.epoch == 1 && saved.position == 16)

        // a new process: the base model again, then the checkpoint
        let resumed = try Self.trainer(model: file, options: options, train: source(), validation: nil,
                                       out: directory + "/interrupted", context: context)
        #expect(throws: TrainingError.self, "a second fresh run into the same directory is refused") {
            _ = try Self.trainer(model: file, options: options, train: source(), validation: nil,
                                 out: directory + "/interrupted", context: context).run(resume: false)
        }
        #expect(try resumed.run(resume: true) == .finished)
        #expect(resumed.optimizer.step == straight.optimizer.step)
        for (a, b) in zip(straight.optimizer.state.tensors, resumed.optimizer.state.tensors) {
            #expect(a.name == b.name)
            #expect(a.value == b.value, "\(a.name): weights differ after resuming")
            #expect(a.m == b.m && a.v == b.v, "\(a.name): moments differ after resuming")
        }
        // other options are refused, naming what differs
        var other = options
        other.batch = 2
        let mismatched = try Self.trainer(model: file, options: other, train: source(), validation: nil,
                                          out: directory + "/interrupted", context: context)
        do {
            _ = try mismatched.run(resume: true)
            Issue.record("resuming with another batch size was accepted")
        } catch let error as TrainingError {
            #expect(error.description.contains("batch 4 (now 2)"), "\(error)")
        }
    }

    /// A non-finite loss stops the run naming the step and the clips; the last good checkpoint
    /// (end of epoch 1) is kept as it was.
    @Test func nonFiniteLossStopsAndKeepsTheLastCheckpoint() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ComputeContext(threads: 2)
        let file = try Self.modelFile(in: directory, ted: true)
        let data = MotionClips.make(pairs: 8, seed: 4)
        let source = MemoryClips(clips: data.clips, labels: data.labels, batch: 8, shuffles: false)
        let trainer = try Self.trainer(model: file, options: Self.options(epochs: 3), train: source, validation: nil,
                                       out: directory + "/run", context: context)
        var checkpointBytes: Data?
        trainer.onProgress = { event in
            if case .epoch = event {
                source.poisoned[5] = [Float](repeating: .nan, count: data.clips[5].count)
                checkpointBytes = FileManager.default.contents(atPath: trainer.checkpointPath)
            }
        }
        do {
            _ = try trainer.run(resume: false)
            Issue.record("a NaN clip trained on")
        } catch let error as TrainingError {
            #expect(error.description.hasPrefix("step 3 (epoch 2, clips clip0, clip1, clip2, clip3, clip4, clip5"), "\(error)")
            #expect(error.description.contains("is not finite"), "\(error)")
            #expect(error.description.contains("checkpoint.safetensors, is kept"), "\(error)")
        }
        #expect(checkpointBytes != nil)
        #expect(FileManager.default.contents(atPath: trainer.checkpointPath) == checkpointBytes, "checkpoint untouched")
        #expect(try TrainingCheckpoint.readState(path: trainer.checkpointPath).epoch == 1)
    }
}

@Suite struct MemoryPlanTests {
    @Test func activationsAreCountedAndTheBudgetPicksTheMicroBatch() throws {
        let directory = try TrainerTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ComputeContext(threads: 1)
        let trainer = try TrainingModel(modelFile: try TrainerTests.modelFile(in: directory, ted: true), context: context)
        let perClip = trainer.activationBytesPerClip(frames: 8, context: context)
        // tiny model: 2 blocks, 17 tokens × 8 frames, width 32, MLP 64. The recompute drops the
        // MLP hidden: 17·8 rows in block 0, the 8 CLS rows after the cut in block 1, and the
        // prompt's kept rows (EOT and masked words) in the text tower's adapted block.
        let vision = 4 * (17 * 8 * 64 + 8 * 64), diff = perClip.kept - perClip.recomputed
        #expect(diff > vision && (diff - vision) % (4 * 64) == 0 && diff - vision <= 4 * 64 * 4, "\(perClip)")
        #expect(perClip.recomputed > 0)
        #expect(!trainer.recomputesMLP, "the probe leaves the setting as it was")
        // a fixed resident size: the suite's other tests change this process's RSS meanwhile
        let resident = 300 << 20
        let roomy = try #require(trainer.plan(budget: 1 << 40, effectiveBatch: 12, frames: 8, queueClips: 4,
                                              resident: resident, context: context))
        #expect(roomy == MemoryPlan(microBatch: 12, accumulate: 1, recomputesMLP: false, estimatedBytes: roomy.estimatedBytes))
        // a budget for about 5 clips beyond the resident part: the largest divisor of 12 that fits
        let fixed = roomy.estimatedBytes - 12 * (perClip.kept * 5 / 4 + 4 * 8 * 3 * 32 * 32)
        let five = fixed + 5 * (perClip.kept * 5 / 4 + 4 * 8 * 3 * 32 * 32)
        let tight = try #require(trainer.plan(budget: five, effectiveBatch: 12, frames: 8, queueClips: 4,
                                              resident: resident, context: context))
        #expect(tight.microBatch == 4 && tight.accumulate == 3 && !tight.recomputesMLP, "\(tight)")
        #expect(trainer.plan(budget: 1 << 20, effectiveBatch: 12, frames: 8, queueClips: 4, resident: resident,
                             context: context) == nil)
    }
}
