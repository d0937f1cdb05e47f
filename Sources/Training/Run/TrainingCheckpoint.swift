import Foundation
import SafeTensors

/// What a run is asked to do; a resumed run must be asked the same (the schedule and the
/// random draws depend on it).
public struct TrainingOptions: Codable, Sendable, Equatable {
    public var epochs = 12
    /// Clips per forward/backward (micro-batch).
    public var batch = 4
    /// Micro-batches per optimizer step: effective batch = batch × accumulate.
    public var accumulate = 1
    /// Peak learning rate; nil: baseLearningRate × effective batch / 256 (spec §6).
    public var learningRate: Float?
    public var baseLearningRate: Float = 1e-3
    public var warmupEpochs: Double = 2
    public var frames = 8
    public var weightDecay: Float = 0.01
    /// Dropout on the VC head's input.
    public var dropout: Float = 0.5
    /// Mask prompt words for the CMLM term (when the model has a CMLM head).
    public var maskPrompts = true
    public var seed: UInt64 = 0

    public init() {}

    public var effectiveBatch: Int { batch * accumulate }
    public var peakLearningRate: Float {
        learningRate ?? LearningRateSchedule.scaledPeak(base: baseLearningRate, effectiveBatch: effectiveBatch)
    }

    enum CodingKeys: String, CodingKey {
        case epochs, batch, accumulate, learningRate = "learning_rate", baseLearningRate = "base_learning_rate"
        case warmupEpochs = "warmup_epochs", frames, weightDecay = "weight_decay", dropout
        case maskPrompts = "mask_prompts", seed
    }
}

/// Where a run is: saved in the checkpoint with the optimizer's state. Every random draw of
/// a run is a function of the seed and these counters (the epoch's order, a clip's
/// augmentation, dropout masks, masked words), so they are the whole RNG state.
public struct TrainingState: Codable, Sendable, Equatable {
    public var format = 1
    public var options: TrainingOptions
    /// The epoch in progress (or the next to run when `position` is 0).
    public var epoch = 0
    /// Clips of `epoch`'s order already consumed.
    public var position = 0
    /// Optimizer updates so far.
    public var step = 0
    public var bestTop1: Double?
    public var bestEpoch: Int?
    /// The model file the run started from.
    public var baseModel: String
    public var trainClips: Int

    enum CodingKeys: String, CodingKey {
        case format, options, epoch, position, step, bestTop1 = "best_top1", bestEpoch = "best_epoch"
        case baseModel = "base_model", trainClips = "train_clips"
    }
}

/// The run's checkpoint: one safetensors file with every trainable parameter and both AdamW
/// moments (`param/`, `adam_m/`, `adam_v/` + release name, F32) and the state as JSON in
/// `__metadata__` (`m2clip.train_state`). Written atomically: a crash or a full disk leaves
/// the previous checkpoint whole.
public enum TrainingCheckpoint {
    static let stateKey = "m2clip.train_state"

    public static func write(path: String, state: TrainingState, optimizer: AdamW) throws {
        var writer = SafeTensorsWriter()
        let saved = optimizer.state
        var s = state
        s.step = saved.step
        for t in saved.tensors {
            try writer.add(name: "param/" + t.name, shape: t.shape, floats: t.value)
            try writer.add(name: "adam_m/" + t.name, shape: t.shape, floats: t.m)
            try writer.add(name: "adam_v/" + t.name, shape: t.shape, floats: t.v)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        writer.metadata = [stateKey: String(decoding: try encoder.encode(s), as: UTF8.self)]
        do {
            try writer.write(to: path)
        } catch let error as SafeTensorsError {
            throw TrainingError("cannot write the checkpoint \(path): \(error.message) (the previous checkpoint, if any, is intact)")
        }
    }

    /// Reads a checkpoint's state (without its tensors).
    public static func readState(path: String) throws -> TrainingState {
        let file = try open(path)
        return try state(of: file)
    }

    /// Reads a checkpoint into `optimizer` (and so the model); returns its state.
    public static func restore(path: String, into optimizer: AdamW) throws -> TrainingState {
        let file = try open(path)
        let s = try state(of: file)
        var tensors: [String: (value: [Float], m: [Float], v: [Float])] = [:]
        for name in file.names where name.hasPrefix("param/") {
            let parameter = String(name.dropFirst("param/".count))
            do {
                tensors[parameter] = (try file.floats(name), try file.floats("adam_m/" + parameter),
                                      try file.floats("adam_v/" + parameter))
            } catch let error as SafeTensorsError {
                throw TrainingError("checkpoint \(path): \(error.tensor.map { "tensor \($0): " } ?? "")\(error.message)")
            }
        }
        try optimizer.restore(step: s.step, tensors: tensors, source: "checkpoint \(path)")
        return s
    }

    private static func open(_ path: String) throws -> SafeTensorsFile {
        do {
            return try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw TrainingError("checkpoint \(path): \(error.tensor.map { "tensor \($0): " } ?? "")\(error.message)")
        }
    }

    private static func state(of file: SafeTensorsFile) throws -> TrainingState {
        guard let json = file.metadata[stateKey] else {
            throw TrainingError("checkpoint \(file.path): not a training checkpoint (__metadata__ has no \(stateKey))")
        }
        do {
            let s = try JSONDecoder().decode(TrainingState.self, from: Data(json.utf8))
            guard s.format == 1 else { throw TrainingError("checkpoint \(file.path): format \(s.format) is not supported") }
            return s
        } catch let error as DecodingError {
            throw TrainingError("checkpoint \(file.path): \(stateKey) is not a training state (\(error))")
        }
    }
}
