import Ops
import SafeTensors

/// Strict access to a checkpoint's tensors: a missing or mis-shaped tensor is an error
/// naming it, and `finish` reports any tensor that nothing consumed.
package final class WeightReader {
    let source: TensorSource
    package var path: String { source.origin }
    package private(set) var consumed: Set<String> = []
    /// When set, F16 and BF16 weights are widened to fp32 Linears (training runs its
    /// backward GEMMs on fp32 panels) instead of staying 16-bit in memory.
    package var widensSixteenBit = false

    package init(path: String) throws {
        do {
            source = try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: error.tensor, error.message)
        }
    }

    init(source: TensorSource) { self.source = source }

    /// The tensor `name` as fp32 values, checked against `shape`. A scalar may be stored
    /// with shape [] or [1].
    package func floats(_ name: String, shape: [Int]) throws -> [Float] {
        guard let stored = source.shape(of: name) else {
            throw CheckpointError(file: path, tensor: name, "missing")
        }
        let scalarMatch = shape.reduce(1, *) == 1 && stored.reduce(1, *) == 1 && stored.count <= 1
            && shape.count <= 1
        guard stored == shape || scalarMatch else {
            throw CheckpointError(file: path, tensor: name, "has shape \(stored), expected \(shape)")
        }
        consumed.insert(name)
        defer { source.release(name) }
        do {
            return try source.floats(name)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: name, error.message)
        }
    }

    package func contains(_ name: String) -> Bool { source.shape(of: name) != nil }

    /// A lookup table (rows × width) kept in the precision it is stored in: fp16 and bf16
    /// tables (quantized model files) stay half the size in memory.
    package func embeddingTable(_ name: String, rows: Int, width: Int) throws -> EmbeddingTable {
        if let dtype = sixteenBitDType(name) {
            guard let stored = source.shape(of: name), stored == [rows, width] else {
                throw CheckpointError(file: path, tensor: name, "has shape \(source.shape(of: name) ?? []), expected \([rows, width])")
            }
            consumed.insert(name)
            defer { source.release(name) }
            let bits = try source.bits16(name)
            return EmbeddingTable(width: width, storage: dtype == .f16 ? .half(bits) : .bfloat16(bits))
        }
        return EmbeddingTable(width: width, storage: .float(try floats(name, shape: [rows, width])))
    }

    /// A LayerNorm from `prefix.weight` and `prefix.bias`.
    package func layerNorm(_ prefix: String, width: Int, epsilon: Float) throws -> LayerNorm {
        LayerNorm(weight: try floats(prefix + ".weight", shape: [width]),
                  bias: try floats(prefix + ".bias", shape: [width]), epsilon: epsilon)
    }

    /// A Linear from `prefix.weight` (out, in) and `prefix.bias`.
    package func linear(_ prefix: String, in inFeatures: Int, out outFeatures: Int, bias: Bool = true,
                context: ComputeContext) throws -> Linear {
        try linear(weight: prefix + ".weight", bias: bias ? prefix + ".bias" : nil, in: inFeatures,
                   out: outFeatures, context: context)
    }

    /// A Linear from a weight (out, in) and an optional bias. An F16 (BF16) weight stays fp16
    /// (bf16) in memory: Linear's fp16 (bf16) precision. An I8 weight is int8, symmetric per output channel,
    /// with its scales in `weight + "_scale"` (what `m2clip quantize` writes); its values and
    /// scales are checked here, so corrupted data is refused at load.
    package func linear(weight: String, bias: String?, in inFeatures: Int, out outFeatures: Int,
                context: ComputeContext) throws -> Linear {
        let biasValues = try bias.map { try floats($0, shape: [outFeatures]) }
        if sixteenBitDType(weight) != nil {
            return try sixteenBitLinear(weight, shape: [outFeatures, inFeatures], bias: biasValues,
                                  in: inFeatures, out: outFeatures, layout: .outIn, context: context)
        }
        guard source.dtype(of: weight) == .i8 else {
            return Linear(weight: try floats(weight, shape: [outFeatures, inFeatures]), bias: biasValues,
                          inFeatures: inFeatures, outFeatures: outFeatures, context: context)
        }
        let shape = source.shape(of: weight) ?? []
        guard shape == [outFeatures, inFeatures] else {
            throw CheckpointError(file: path, tensor: weight, "has shape \(shape), expected \([outFeatures, inFeatures])")
        }
        let values = try source.int8s(weight)
        if let bad = values.firstIndex(of: -128) {
            throw CheckpointError(file: path, tensor: weight,
                                  "value -128 at flat index \(bad): symmetric int8 weights lie in [-127, 127] (corrupted?)")
        }
        let scaleName = M2CLIPNames.scale(of: weight)
        let scales = try floats(scaleName, shape: [outFeatures])
        if let bad = scales.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw CheckpointError(file: path, tensor: scaleName, "scale \(scales[bad]) of channel \(bad) is not a finite non-negative number (corrupted?)")
        }
        consumed.insert(weight)
        source.release(weight)
        return Linear(quantized: values, scales: scales, bias: biasValues, inFeatures: inFeatures,
                      outFeatures: outFeatures, context: context)
    }

    /// A bias-free projection stored whole under `name`, (out, in) or (in, out); fp16 (bf16)
    /// in memory when F16 (BF16) in the file.
    package func projection(_ name: String, layout: ProjectionLayout, in inFeatures: Int, out outFeatures: Int,
                    context: ComputeContext) throws -> Linear {
        if sixteenBitDType(name) != nil {
            let isOutIn = layout == .outIn
            return try sixteenBitLinear(name, shape: isOutIn ? [outFeatures, inFeatures] : [inFeatures, outFeatures],
                                  bias: nil, in: inFeatures, out: outFeatures,
                                  layout: isOutIn ? .outIn : .inOut, context: context)
        }
        switch layout {
        case .outIn:
            return Linear(weight: try floats(name, shape: [outFeatures, inFeatures]), bias: nil,
                          inFeatures: inFeatures, outFeatures: outFeatures, context: context)
        case .inOut:
            return Linear(weight: try floats(name, shape: [inFeatures, outFeatures]), bias: nil,
                          inFeatures: inFeatures, outFeatures: outFeatures, layout: .inOut, context: context)
        }
    }

    /// A bias-free Linear from a weight stored with `shape`, whose rows flattened are
    /// (out, in): a patch embedding's convolution (d, C, p, p). fp16 (bf16) in memory when
    /// F16 (BF16).
    func flattenedLinear(_ name: String, shape: [Int], in inFeatures: Int, out outFeatures: Int,
                         context: ComputeContext) throws -> Linear {
        precondition(shape.reduce(1, *) == inFeatures * outFeatures && shape.first == outFeatures)
        if sixteenBitDType(name) != nil {
            return try sixteenBitLinear(name, shape: shape, bias: nil, in: inFeatures, out: outFeatures,
                                  layout: .outIn, context: context)
        }
        return Linear(weight: try floats(name, shape: shape), bias: nil, inFeatures: inFeatures,
                      outFeatures: outFeatures, context: context)
    }

    /// .f16 or .bf16 when `name` is stored in one of them: weights Linear keeps as they are.
    private func sixteenBitDType(_ name: String) -> DType? {
        if widensSixteenBit { return nil }
        let dtype = source.dtype(of: name)
        return dtype == .f16 || dtype == .bf16 ? dtype : nil
    }

    /// An F16 or BF16 weight kept as its bits for Linear's fp16 or bf16 precision, checked
    /// against `shape`.
    private func sixteenBitLinear(_ name: String, shape: [Int], bias: [Float]?, in inFeatures: Int,
                            out outFeatures: Int, layout: Linear.WeightLayout,
                            context: ComputeContext) throws -> Linear {
        let stored = source.shape(of: name) ?? []
        guard stored == shape else {
            throw CheckpointError(file: path, tensor: name, "has shape \(stored), expected \(shape)")
        }
        consumed.insert(name)
        defer { source.release(name) }
        let bits: [UInt16]
        do {
            bits = try source.bits16(name)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: name, error.message)
        }
        if source.dtype(of: name) == .bf16 {
            return Linear(bfloat16Weight: bits, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures,
                          layout: layout, context: context)
        }
        return Linear(halfWeight: bits, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures,
                      layout: layout, context: context)
    }

    /// Fails on the first tensor nobody consumed, unless `ignore` says it may be left.
    package func finish(ignoring ignore: (String) -> Bool) throws {
        for name in source.tensorNames where !consumed.contains(name) && !ignore(name) {
            throw CheckpointError(file: path, tensor: name, "unexpected (not part of this model)")
        }
    }
}

/// Rows of an embedding table, fp32, fp16 or bf16 in memory.
package struct EmbeddingTable: Sendable {
    enum Storage: Sendable {
        case float([Float])
        case half([UInt16])
        case bfloat16([UInt16])
    }

    package let width: Int
    let storage: Storage

    /// Adds row `index` to `out` (width values).
    package func add(row index: Int, to out: UnsafeMutablePointer<Float>) {
        let start = index * width
        switch storage {
        case .float(let values):
            for j in 0..<width { out[j] += values[start + j] }
        case .half(let bits):
            for j in 0..<width { out[j] += FloatConversion.float(fromFloat16Bits: bits[start + j]) }
        case .bfloat16(let bits):
            for j in 0..<width { out[j] += FloatConversion.float(fromBFloat16Bits: bits[start + j]) }
        }
    }
}
