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
///
/// The training-only parts (the CMLM block, its text adapters and the MLM head, spec §4) are
/// dropped unless `keepTrainingParts`: inference never reads them, and the quantized file is
/// for the camera host. The output's configuration then has no `cmlm`, so nothing claims the
/// tensors that are gone.
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
    /// Copy the CMLM block and MLM head as they are (fp32) instead of dropping them.
    public var keepTrainingParts: Bool

    public init(target: Target = .int8, operations: [Operation] = Operation.allCases, fp32Layers: [Int] = [],
                keepTrainingParts: Bool = false) {
        self.target = target
        self.operations = operations
        self.fp32Layers = fp32Layers
        self.keepTrainingParts = keepTrainingParts
    }

    /// True for the tensors `quantize` drops: the MLM head and the text blocks after the CLIP
    /// ones (the CMLM block and its adapters), also in files whose configuration predates
    /// `cmlm`.
    public static func isTrainingOnly(_ name: String, _ c: M2CLIPConfiguration) -> Bool {
        CMLMTensors.isTrainingOnly(name, textLayers: c.clip.text.encoder.layers)
    }

    /// Weight names (release names) this policy stores in the target precision.
    public func quantizedWeights(_ c: M2CLIPConfiguration) -> Set<String> {
        var names = Set<String>()
        func block(_ names: BlockNames, _ kinds: [Operation]) -> [String] {
            var out: [String] = []
            if kinds.contains(.qkv), case .fused(let weight, _) = names.attention { out.append(weight) }
            if kinds.contains(.outProj) { out.append(names.outProjection.weight) }
            if kinds.contains(.mlp) { out += [names.fc1.weight, names.fc2.weight] }
            return out
        }
        for layer in 0..<c.clip.vision.encoder.layers where !fp32Layers.contains(layer) {
            names.formUnion(block(OpenAICLIPNames.block(OpenAICLIPNames.visualBlock(layer)), operations))
            if operations.contains(.adapters) {
                for position in c.ted.positions {
                    let ted = M2CLIPNames.ted(layer: layer, position: position)
                    names.formUnion([ted.teFC1, ted.teFC2, ted.tdFC1, ted.tdFC2].map(\.weight))
                }
            }
        }
        if operations.contains(.adapters) {
            names.formUnion([M2CLIPNames.postAdapterFC1.weight, M2CLIPNames.postAdapterFC2.weight])
            for layer in c.textAdapter.layers {
                for position in c.textAdapter.positions {
                    let adapter = M2CLIPNames.textAdapter(layer: layer, position: position)
                    names.formUnion([adapter.fc1.weight, adapter.fc2.weight])
                }
            }
        }
        if operations.contains(.text) {
            for layer in 0..<c.clip.text.encoder.layers {
                names.formUnion(block(OpenAICLIPNames.block(OpenAICLIPNames.textBlock(layer)), [.qkv, .outProj, .mlp]))
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
            if !keepTrainingParts && Self.isTrainingOnly(name, configuration) { continue }
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
        if !keepTrainingParts { configuration.cmlm = nil }
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
