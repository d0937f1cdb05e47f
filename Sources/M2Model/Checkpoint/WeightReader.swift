import Ops
import SafeTensors

/// Strict access to a checkpoint's tensors: a missing or mis-shaped tensor is an error
/// naming it, and `finish` reports any tensor that nothing consumed.
final class WeightReader {
    let source: TensorSource
    var path: String { source.origin }
    private(set) var consumed: Set<String> = []

    init(path: String) throws {
        do {
            source = try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: error.tensor, error.message)
        }
    }

    init(source: TensorSource) { self.source = source }

    /// The tensor `name` as fp32 values, checked against `shape`. A scalar may be stored
    /// with shape [] or [1].
    func floats(_ name: String, shape: [Int]) throws -> [Float] {
        guard let stored = source.shape(of: name) else {
            throw CheckpointError(file: path, tensor: name, "missing")
        }
        let scalarMatch = shape.reduce(1, *) == 1 && stored.reduce(1, *) == 1 && stored.count <= 1
            && shape.count <= 1
        guard stored == shape || scalarMatch else {
            throw CheckpointError(file: path, tensor: name, "has shape \(stored), expected \(shape)")
        }
        consumed.insert(name)
        do {
            return try source.floats(name)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: name, error.message)
        }
    }

    func contains(_ name: String) -> Bool { source.shape(of: name) != nil }

    /// A LayerNorm from `prefix.weight` and `prefix.bias`.
    func layerNorm(_ prefix: String, width: Int, epsilon: Float) throws -> LayerNorm {
        LayerNorm(weight: try floats(prefix + ".weight", shape: [width]),
                  bias: try floats(prefix + ".bias", shape: [width]), epsilon: epsilon)
    }

    /// A Linear from `prefix.weight` (out, in) and `prefix.bias`.
    func linear(_ prefix: String, in inFeatures: Int, out outFeatures: Int, bias: Bool = true,
                context: ComputeContext) throws -> Linear {
        Linear(weight: try floats(prefix + ".weight", shape: [outFeatures, inFeatures]),
               bias: bias ? try floats(prefix + ".bias", shape: [outFeatures]) : nil,
               inFeatures: inFeatures, outFeatures: outFeatures, context: context)
    }

    /// A bias-free projection stored whole under `name`, (out, in) or (in, out).
    func projection(_ name: String, layout: ProjectionLayout, in inFeatures: Int, out outFeatures: Int,
                    context: ComputeContext) throws -> Linear {
        switch layout {
        case .outIn:
            return Linear(weight: try floats(name, shape: [outFeatures, inFeatures]), bias: nil,
                          inFeatures: inFeatures, outFeatures: outFeatures, context: context)
        case .inOut:
            return Linear(weight: try floats(name, shape: [inFeatures, outFeatures]), bias: nil,
                          inFeatures: inFeatures, outFeatures: outFeatures, layout: .inOut, context: context)
        }
    }

    /// Fails on the first tensor nobody consumed, unless `ignore` says it may be left.
    func finish(ignoring ignore: (String) -> Bool) throws {
        for name in source.tensorNames where !consumed.contains(name) && !ignore(name) {
            throw CheckpointError(file: path, tensor: name, "unexpected (not part of this model)")
        }
    }
}
