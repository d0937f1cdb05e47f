import Foundation
import M2Model
import Ops
import SafeTensors

/// Writes the int8 version of an fp32 model file: linear weights become int8, symmetric, one
/// scale per output channel (stored beside each weight as `<weight>_scale`). Which ones:
/// the image tower's qkv, out_proj and MLP; the adapters' fc layers (TED, temporal, text);
/// the text tower's linears (it runs only when labels change). The token embedding, the patch
/// embedding and the text projection are stored in fp16 (bf16 for the bf16 target; computed
/// in fp32). LayerNorms, softmax, GELU, the adapters' depthwise convolutions and the heads
/// stay fp32. Image-tower blocks listed in `fp32Layers` stay fp32 entirely (their adapters
/// too), for blocks whose activations have outlier channels. The fp16 and bf16 targets store
/// the same weights as int8 does, in 16 bits instead, and keep them so in memory.
public struct Quantizer: Sendable {
    public enum Operation: String, CaseIterable, Codable, Sendable {
        case qkv, outProj = "out_proj", mlp, adapters, text
    }

    /// What the selected weights become.
    public enum Target: String, CaseIterable, Sendable {
        /// int8 per output channel, multiplied by the int8 kernels.
        case int8
        /// fp16 in the file and in memory (half of each): the GEMMs widen a KC × nr slice of
        /// the weight panels at a time to fp32 (F16C / NEON) and accumulate in fp32.
        case fp16
        /// bf16 (rounded to nearest, ties to even) in the file and in memory, widened and
        /// summed as fp16 is. Three fewer mantissa bits than fp16 (8 significant bits against
        /// 11), so a larger rounding error, but fp32's exponent range: nothing overflows or
        /// flushes to zero.
        case bf16
    }

    public var target: Target
    public var operations: [Operation]
    public var fp32Layers: [Int]

    public init(target: Target = .int8, operations: [Operation] = Operation.allCases, fp32Layers: [Int] = []) {
        self.target = target
        self.operations = operations
        self.fp32Layers = fp32Layers
    }

    /// Weight names (release names) this policy stores in the target precision.
    public func quantizedWeights(_ c: M2CLIPConfiguration) -> Set<String> {
        var names = Set<String>()
        func block(_ prefix: String) -> [String] {
            var out: [String] = []
            if operations.contains(.qkv) { out.append("\(prefix).attn.in_proj_weight") }
            if operations.contains(.outProj) { out.append("\(prefix).attn.out_proj.weight") }
            if operations.contains(.mlp) { out += ["\(prefix).mlp.c_fc.weight", "\(prefix).mlp.c_proj.weight"] }
            return out
        }
        for layer in 0..<c.clip.vision.encoder.layers where !fp32Layers.contains(layer) {
            names.formUnion(block("visual.transformer.resblocks.\(layer)"))
            if operations.contains(.adapters) {
                for position in c.ted.positions {
                    let prefix = "visual.transformer.resblocks.\(layer).\(position == .preAttention ? "adapter_pre_attn" : "adapter_pre_mlp")"
                    for fc in ["fc1", "fc2", "offset_adapter.fc1", "offset_adapter.fc2"] {
                        names.insert("\(prefix).\(fc).weight")
                    }
                }
            }
        }
        if operations.contains(.adapters) {
            names.formUnion(["visual.t_adapter.fc1.weight", "visual.t_adapter.fc2.weight"])
            for layer in c.textAdapter.layers {
                let prefix = "transformer.resblocks.\(layer).adapter_pre_mlp"
                names.formUnion(["\(prefix).textad_fc1.weight", "\(prefix).textad_fc2.weight"])
            }
        }
        if operations.contains(.text) {
            for layer in 0..<c.clip.text.encoder.layers {
                let prefix = "transformer.resblocks.\(layer)"
                names.formUnion(["\(prefix).attn.in_proj_weight", "\(prefix).attn.out_proj.weight",
                                 "\(prefix).mlp.c_fc.weight", "\(prefix).mlp.c_proj.weight"])
            }
        }
        return names
    }

    /// Tensors stored in fp16 for the int8 and fp16 targets, bf16 for bf16 (lookup tables, read
    /// a row at a time, and the patch embedding and text projection).
    static let halfPrecision: Set<String> = ["token_embedding.weight", "visual.conv1.weight", "text_projection"]

    /// Reads `input` (an fp32 model file) and writes `output`; returns the sizes in bytes.
    @discardableResult
    public func quantize(input: String, output: String) throws -> (input: Int, output: Int) {
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: input)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: input, tensor: error.tensor, error.message)
        }
        guard let configJSON = file.metadata["m2clip.config"],
              var configuration = try? JSONDecoder().decode(M2CLIPConfiguration.self, from: Data(configJSON.utf8)) else {
            throw CheckpointError(file: input, "not an m2clip model file (no m2clip.config in __metadata__)")
        }
        if let existing = configuration.quantization {
            throw CheckpointError(file: input, "already quantized (\(existing.scheme)); quantize the fp32 model")
        }
        let targets = quantizedWeights(configuration)
        var writer = SafeTensorsWriter()
        for name in file.names {
            let info = file.info(name)!
            if targets.contains(name) {
                guard info.shape.count == 2, info.dtype.isConvertibleToFloat else {
                    throw CheckpointError(file: input, tensor: name, "expected a 2-D floating-point weight, found \(info.dtype) \(info.shape)")
                }
                let weight = try file.floats(name)
                switch target {
                case .fp16:
                    try writer.add(name: name, shape: info.shape, float16s: weight)
                    continue
                case .bf16:
                    try writer.add(name: name, shape: info.shape, bfloat16s: weight)
                    continue
                case .int8:
                    break
                }
                let (values, scales) = Linear.quantize(weight: weight, inFeatures: info.shape[1], outFeatures: info.shape[0])
                try values.withUnsafeBytes {
                    try writer.add(name: name, dtype: .i8, shape: info.shape, bytes: $0)
                }
                try writer.add(name: name + "_scale", shape: [info.shape[0]], floats: scales)
            } else if Self.halfPrecision.contains(name) && info.dtype == .f32 {
                if target == .bf16 {
                    try writer.add(name: name, shape: info.shape, bfloat16s: try file.floats(name))
                } else {
                    try writer.add(name: name, shape: info.shape, float16s: try file.floats(name))
                }
            } else {
                try writer.add(name: name, dtype: info.dtype, shape: info.shape, bytes: try file.bytes(name))
            }
        }
        configuration.quantization = QuantizationInfo(scheme: target.rawValue, operations: operations.map(\.rawValue),
                                                      fp32Layers: fp32Layers)
        var metadata = file.metadata
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        metadata["m2clip.config"] = String(decoding: try encoder.encode(configuration), as: UTF8.self)
        writer.metadata = metadata
        do {
            try writer.write(to: output)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: output, "cannot write: \(error.message)")
        }
        let size = { (path: String) in (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
        return (size(input), size(output))
    }
}
