import Foundation
import Ops
import SafeTensors

/// The gradient buffers of every trainable parameter, by the authors' release name (spec §8),
/// in the order they were registered.
public final class GradientSet: @unchecked Sendable {
    /// How a buffer maps onto the release tensor.
    enum Layout {
        /// Same values, same order.
        case plain
        /// A depthwise conv kept as (taps, C); the release stores (C, 1, …taps).
        case tapsByChannels

        func toRelease(_ v: [Float], bufferShape: [Int]) -> [Float] {
            guard case .tapsByChannels = self else { return v }
            let taps = bufferShape[0], channels = bufferShape[1]
            var out = [Float](repeating: 0, count: v.count)
            for c in 0..<channels { for k in 0..<taps { out[c * taps + k] = v[k * channels + c] } }
            return out
        }

        func fromRelease(_ v: [Float], bufferShape: [Int]) -> [Float] {
            guard case .tapsByChannels = self else { return v }
            let taps = bufferShape[0], channels = bufferShape[1]
            var out = [Float](repeating: 0, count: v.count)
            for c in 0..<channels { for k in 0..<taps { out[k * channels + c] = v[c * taps + k] } }
            return out
        }
    }

    /// Where the parameter itself lives, to read and replace it (the optimizer's update, a
    /// finite-difference probe).
    enum Parameter {
        /// A Linear's fp32 weight, in its packed panels.
        case linearWeight(Linear)
        /// A tensor in the buffer's layout (biases, LayerNorm, depthwise conv (taps, C)).
        case tensor(Tensor)
    }

    struct Entry {
        let name: String
        let shape: [Int] // the release's
        let buffer: Tensor
        let layout: Layout
        let parameter: Parameter
    }

    private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]

    public init() {}

    func register(_ name: String, shape: [Int], buffer: Tensor, layout: Layout = .plain, parameter: Parameter) {
        precondition(index[name] == nil, "gradient \(name) registered twice")
        precondition(shape.reduce(1, *) == buffer.count, "gradient \(name): shape \(shape) for \(buffer.count) values")
        index[name] = entries.count
        entries.append(Entry(name: name, shape: shape, buffer: buffer, layout: layout, parameter: parameter))
    }

    func register(_ prefix: String, _ gradient: LinearGradient) {
        register(prefix + ".weight", shape: gradient.weight.shape, buffer: gradient.weight,
                 parameter: .linearWeight(gradient.layer))
        if let bias = gradient.bias, let values = gradient.layer.bias {
            register(prefix + ".bias", shape: bias.shape, buffer: bias, parameter: .tensor(values))
        }
    }

    func register(_ prefix: String, _ gradient: ConvGradient, releaseShape: [Int]) {
        register(prefix + ".weight", shape: releaseShape, buffer: gradient.weight, layout: .tapsByChannels,
                 parameter: .tensor(gradient.conv.weight))
        register(prefix + ".bias", shape: gradient.bias.shape, buffer: gradient.bias,
                 parameter: .tensor(gradient.conv.bias))
    }

    func register(_ prefix: String, _ gradient: LayerNormGradient) {
        register(prefix + ".weight", shape: gradient.weight.shape, buffer: gradient.weight,
                 parameter: .tensor(gradient.norm.weight))
        register(prefix + ".bias", shape: gradient.bias.shape, buffer: gradient.bias,
                 parameter: .tensor(gradient.norm.bias))
    }

    /// The release names, in registration order.
    public var names: [String] { entries.map(\.name) }

    /// Number of trainable values.
    public var parameterCount: Int { entries.reduce(0) { $0 + $1.buffer.count } }

    /// Sets every gradient to zero (before a step).
    public func zero() { for e in entries { e.buffer.zero() } }

    /// The gradient of `name` in the release's layout and shape.
    public func values(_ name: String) -> (shape: [Int], values: [Float])? {
        guard let i = index[name] else { return nil }
        let e = entries[i]
        return (e.shape, e.layout.toRelease(e.buffer.array, bufferShape: e.buffer.shape))
    }

    /// The parameter `name` itself, in the release's layout and shape.
    public func parameter(_ name: String) -> [Float]? {
        guard let i = index[name] else { return nil }
        let e = entries[i]
        switch e.parameter {
        case .linearWeight(let layer): return layer.fp32Weights()
        case .tensor(let t): return e.layout.toRelease(t.array, bufferShape: e.buffer.shape)
        }
    }

    /// Replaces the parameter `name` with `values` (release layout): every later step sees it.
    public func setParameter(_ name: String, _ values: [Float]) {
        guard let i = index[name] else { preconditionFailure("no trainable parameter \(name)") }
        let e = entries[i]
        precondition(values.count == e.buffer.count, "\(name): \(values.count) values for \(e.buffer.count)")
        switch e.parameter {
        case .linearWeight(let layer): layer.setFP32Weights(values)
        case .tensor(let t):
            let v = e.layout.fromRelease(values, bufferShape: e.buffer.shape)
            for j in 0..<v.count { t.data[j] = v[j] }
        }
    }

    /// Sets the gradient of `name` to `values` (release layout).
    func setValues(_ name: String, _ values: [Float]) {
        guard let i = index[name] else { preconditionFailure("no trainable parameter \(name)") }
        let e = entries[i]
        precondition(values.count == e.buffer.count, "\(name): \(values.count) values for \(e.buffer.count)")
        let v = e.layout.fromRelease(values, bufferShape: e.buffer.shape)
        for j in 0..<v.count { e.buffer.data[j] = v[j] }
    }

    /// Every buffer's values, in registration order (to sum micro-batches).
    func snapshot() -> [[Float]] { entries.map(\.buffer.array) }

    /// Adds the buffers to `sum` (a `snapshot()` of them when nil): micro-batches summed.
    func accumulate(into sum: inout [[Float]]?) {
        guard sum != nil else {
            sum = snapshot()
            return
        }
        for (i, e) in entries.enumerated() {
            sum![i].withUnsafeMutableBufferPointer { s in
                for j in 0..<s.count { s[j] += e.buffer.data[j] }
            }
        }
    }

    /// Adds `scale` × `snapshot` (from `snapshot()`) to the buffers.
    func add(_ snapshot: [[Float]], scale: Float = 1) {
        precondition(snapshot.count == entries.count, "snapshot of another gradient set")
        for (e, values) in zip(entries, snapshot) {
            for j in 0..<values.count { e.buffer.data[j] += scale * values[j] }
        }
    }

    /// Multiplies every gradient by `factor`.
    func scale(by factor: Float) {
        for e in entries { for j in 0..<e.buffer.count { e.buffer.data[j] *= factor } }
    }

    /// True when every value is finite; else the first tensor that is not.
    public func firstNonFinite() -> String? {
        entries.first { e in (0..<e.buffer.count).contains { !e.buffer.data[$0].isFinite } }?.name
    }

    /// Writes every gradient, fp32, under its release name (atomically).
    public func write(to path: String, metadata: [String: String] = [:]) throws {
        var writer = SafeTensorsWriter()
        for e in entries {
            let (shape, values) = self.values(e.name)!
            try writer.add(name: e.name, shape: shape, floats: values)
        }
        writer.metadata = metadata
        do {
            try writer.write(to: path)
        } catch let error as SafeTensorsError {
            throw TrainingError("cannot write gradients to \(path): \(error.message)")
        }
    }
}

/// A training error that says what and where, in one line.
public struct TrainingError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
