import Foundation
import M2Model
import Ops

/// The model and compute context the cameras share. One window runs at a time (the context's
/// thread pool already uses every core it was given), so calls from several camera pipelines
/// are serialised here, first come first served: each camera has at most one window waiting,
/// so a busy camera cannot take the cores twice while another waits (round robin).
public final class InferenceEngine: @unchecked Sendable {
    public let model: M2CLIPModel
    public let context: ComputeContext
    private let lock = FairGate()

    public init(model: M2CLIPModel, context: ComputeContext) {
        self.model = model
        self.context = context
    }

    /// Runs one clip. - Parameter pixels: (T, 3, S, S), normalised.
    public func run(pixels: [Float], frames: Int) -> M2CLIPModel.ClipOutput {
        let size = model.vision.configuration.imageSize
        precondition(pixels.count == frames * 3 * size * size,
                     "inference: \(pixels.count) floats for \(frames) frames of \(size)x\(size)")
        return lock.withLock {
            pixels.withUnsafeBufferPointer { model(pixels: $0.baseAddress!, clips: 1, frames: frames, context: context)[0] }
        }
    }

    /// Projected text embeddings of `labels` in the model's prompt template, (C, P).
    public func labelEmbeddings(_ labels: [String]) throws -> [[Float]] {
        try lock.withLock { try labels.map { try model.labelEmbedding($0, context: context) } }
    }
}

/// A lock that admits waiters in arrival order (a ticket lock). NSLock and pthread mutexes
/// let a thread that just unlocked take the lock again before a waiter wakes, which starves
/// the other cameras when one camera's windows queue back to back.
final class FairGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var nextTicket = 0
    private var serving = 0

    /// Threads holding or waiting for the gate.
    var queued: Int { condition.withLock { nextTicket - serving } }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        let ticket = nextTicket
        nextTicket += 1
        while serving != ticket { condition.wait() }
        condition.unlock()
        defer {
            condition.withLock {
                serving += 1
                condition.broadcast()
            }
        }
        return try body()
    }
}

/// Turns a clip's output into label scores the way `VideoClassifier` does: softmax of the VC
/// logits, or zero-shot probabilities over the model's labels or the camera's own.
public struct WindowScorer: Sendable {
    public let head: DaemonConfiguration.Head
    public let labels: [String]
    /// Camera labels' text embeddings, (C, P); nil: the model's `labelScores`.
    private let embeddings: [[Float]]?
    private let scale: Float

    /// - Throws: `ClassifierError`-style `PipelineError` when head vc is asked of a model
    ///   without a VC head matching its labels.
    public init(camera: DaemonConfiguration.Camera, engine: InferenceEngine) throws {
        let model = engine.model, c = model.configuration
        let vcUsable = c.classes > 0 && c.classes == model.labels.count
        scale = exp(model.logitScale)
        if let labels = camera.labels {
            head = .zeroShot
            self.labels = labels
            embeddings = try engine.labelEmbeddings(labels)
            return
        }
        switch camera.head {
        case .vc:
            guard vcUsable else {
                throw PipelineError(camera: camera.id, "head vc: the model has no VC head for its \(model.labels.count) labels; use zero-shot")
            }
            head = .vc
        case .zeroShot:
            head = .zeroShot
        case nil:
            head = vcUsable && c.vcHeadTrained ? .vc : .zeroShot
        }
        labels = model.labels
        embeddings = nil
    }

    /// Probabilities over `labels`.
    public func scores(_ output: M2CLIPModel.ClipOutput) -> [Float] {
        if head == .vc { return softmax(output.vcLogits ?? []) }
        guard let embeddings else { return output.labelScores }
        // As M2CLIPModel.zeroShotScores: softmax of exp(logit_scale) · cos(video, label).
        let video = output.videoEmbedding
        let videoNorm = max(sqrt(video.reduce(0) { $0 + $1 * $1 }), 1e-12)
        return softmax(embeddings.map { w in
            var dot: Float = 0, norm: Float = 0
            for j in 0..<min(w.count, video.count) { dot += video[j] * w[j]; norm += w[j] * w[j] }
            return scale * dot / (videoNorm * max(sqrt(norm), 1e-12))
        })
    }
}

/// A camera pipeline that cannot be built: `camera door: head vc: …`.
public struct PipelineError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(camera: String, _ message: String) { description = "camera \(camera): \(message)" }
}
