import Foundation
import M2Model

/// AdamW (Loshchilov & Hutter), step for step as `torch.optim.AdamW` computes it, over the
/// trainable parameters of a `GradientSet` (spec §6): decoupled weight decay, none on biases
/// and LayerNorm parameters (the 1-D tensors), the text adapters at half the learning rate.
///
/// The optimizer keeps its own fp32 copy of every parameter in the release layout, so an
/// update is exact whatever the layer stores (packed panels); after each step the copy is
/// written back into the model.
public final class AdamW: @unchecked Sendable {
    public struct Hyperparameters: Codable, Sendable, Equatable {
        public var beta1: Float = 0.9
        public var beta2: Float = 0.999
        public var epsilon: Float = 1e-8
        public var weightDecay: Float = 0.01
        public init() {}
    }

    /// One parameter's state: its values and both moments, release layout.
    struct Slot {
        let name: String
        let shape: [Int]
        var value: [Float]
        var m: [Float]
        var v: [Float]
        let decays: Bool
        let lrScale: Float
    }

    public let hyper: Hyperparameters
    /// Steps taken (PyTorch's `state['step']`, shared by all parameters here).
    public private(set) var step = 0
    private(set) var slots: [Slot]
    private let gradients: GradientSet

    /// Names that train at half the base learning rate (spec §6: the text adapters).
    static func learningRateScale(_ name: String) -> Float { M2CLIPNames.isTextAdapter(name) ? 0.5 : 1 }

    public init(gradients: GradientSet, hyper: Hyperparameters = .init()) {
        self.gradients = gradients
        self.hyper = hyper
        slots = gradients.entries.map { e in
            let value = gradients.parameter(e.name)!
            return Slot(name: e.name, shape: e.shape, value: value,
                        m: [Float](repeating: 0, count: value.count), v: [Float](repeating: 0, count: value.count),
                        decays: e.shape.count > 1, lrScale: Self.learningRateScale(e.name))
        }
    }

    /// Names of the parameters that get weight decay.
    public var decayedNames: [String] { slots.filter(\.decays).map(\.name) }

    /// One update with the gradients now in the set, at base learning rate `lr`; the new
    /// values are written into the model.
    public func update(learningRate lr: Float) {
        step += 1
        let b1 = hyper.beta1, b2 = hyper.beta2, eps = hyper.epsilon
        let t = Float(step)
        let correction1 = 1 - pow(b1, t)
        let correction2Root = (1 - pow(b2, t)).squareRoot()
        for i in slots.indices {
            let g = gradients.values(slots[i].name)!.values
            let rate = lr * slots[i].lrScale
            let stepSize = rate / correction1
            let decay = slots[i].decays ? 1 - rate * hyper.weightDecay : 1
            // Moved out of the slot while the loop runs (one exclusive access per array).
            var p = slots[i].value, m = slots[i].m, v = slots[i].v
            slots[i].value = []
            slots[i].m = []
            slots[i].v = []
            for j in 0..<p.count {
                // torch: p *= 1 − lr·wd; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²;
                // p −= (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)
                p[j] *= decay
                m[j] = m[j] * b1 + g[j] * (1 - b1)
                v[j] = v[j] * b2 + g[j] * g[j] * (1 - b2)
                let denominator = v[j].squareRoot() / correction2Root + eps
                p[j] -= stepSize * (m[j] / denominator)
            }
            slots[i].value = p
            slots[i].m = m
            slots[i].v = v
            gradients.setParameter(slots[i].name, slots[i].value)
        }
    }

    /// The optimizer's state for a checkpoint: per parameter (value, m, v), and the step.
    public var state: (step: Int, tensors: [(name: String, shape: [Int], value: [Float], m: [Float], v: [Float])]) {
        (step, slots.map { ($0.name, $0.shape, $0.value, $0.m, $0.v) })
    }

    /// Restores `state` (a checkpoint's), writing the values into the model. Every trainable
    /// parameter must be there with its shape; `source` names the file in errors.
    public func restore(step: Int, tensors: [String: (value: [Float], m: [Float], v: [Float])], source: String) throws {
        for i in slots.indices {
            let name = slots[i].name, count = slots[i].value.count
            guard let saved = tensors[name] else { throw TrainingError("\(source): no state for parameter \(name)") }
            guard saved.value.count == count, saved.m.count == count, saved.v.count == count else {
                throw TrainingError("\(source): parameter \(name) has \(saved.value.count) values, the model \(count)")
            }
        }
        for i in slots.indices {
            let saved = tensors[slots[i].name]!
            slots[i].value = saved.value
            slots[i].m = saved.m
            slots[i].v = saved.v
            gradients.setParameter(slots[i].name, saved.value)
        }
        self.step = step
    }
}

/// The learning rate over a run (spec §6): linear warm-up from 0 to `peak` over `warmupSteps`,
/// then cosine decay to 0 at `totalSteps`.
public struct LearningRateSchedule: Codable, Sendable, Equatable {
    public var peak: Float
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(peak: Float, warmupSteps: Int, totalSteps: Int) {
        self.peak = peak
        self.warmupSteps = max(0, min(warmupSteps, totalSteps - 1))
        self.totalSteps = max(1, totalSteps)
    }

    /// lr = base × effective batch / 256 (the release's rule; base 1e-3).
    public static func scaledPeak(base: Float, effectiveBatch: Int) -> Float { base * Float(effectiveBatch) / 256 }

    /// The rate for the update numbered `step` (0-based).
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps) }
        let span = max(1, totalSteps - warmupSteps)
        let progress = min(1, Double(step - warmupSteps) / Double(span))
        return peak * Float(0.5 * (1 + cos(Double.pi * progress)))
    }
}
