import Foundation
import Ops
import SafeTensors

/// Writes an untrained CLIP checkpoint with random weights in Hugging Face layout
/// (config.json, model.safetensors, the bundled vocab.json / merges.txt), so that latency
/// can be measured and the pipeline run on a machine that has no real weights. Its
/// outputs mean nothing; `config.json` says so in `m2clip_untrained`.
public enum RandomCheckpoint {
    public enum Preset: String, CaseIterable, Sendable {
        case vitB16 = "vit-b16", vitB32 = "vit-b32", vitL14 = "vit-l14", tiny

        public var configuration: CLIPConfiguration {
            switch self {
            case .vitB16: return CLIPConfiguration(vision: .init(patchSize: 16))
            case .vitB32: return CLIPConfiguration(vision: .init(patchSize: 32))
            case .vitL14:
                return CLIPConfiguration(
                    projectionDim: 768,
                    text: .init(hiddenSize: 768, intermediateSize: 3072, heads: 12),
                    vision: .init(hiddenSize: 1024, intermediateSize: 4096, heads: 16, layers: 24,
                                  patchSize: 14))
            case .tiny:
                return CLIPConfiguration(
                    projectionDim: 32,
                    text: .init(hiddenSize: 32, intermediateSize: 64, heads: 4, layers: 2),
                    vision: .init(hiddenSize: 32, intermediateSize: 64, heads: 4, layers: 2,
                                  imageSize: 32, patchSize: 8))
            }
        }
    }

    /// Writes the checkpoint into `directory` (created if needed).
    public static func write(configuration c: CLIPConfiguration, to directory: String, seed: UInt64) throws {
        let dir = URL(fileURLWithPath: directory)
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(file: directory, "cannot create directory: \(error.localizedDescription)")
        }
        var rng = SplitMix64(seed: seed)
        var writer = SafeTensorsWriter()
        func normal(_ name: String, _ shape: [Int], std: Float) throws {
            let values = (0..<shape.reduce(1, *)).map { _ in rng.nextNormal() * std }
            try writer.add(name: name, shape: shape, floats: values)
        }
        func constant(_ name: String, _ shape: [Int], _ value: Float) throws {
            try writer.add(name: name, shape: shape, floats: [Float](repeating: value, count: shape.reduce(1, *)))
        }
        func block(_ names: BlockNames, _ e: EncoderShape) throws {
            let d = e.hiddenSize, std = 1 / Float(d).squareRoot()
            guard case .separate(let q, let k, let v) = names.attention else { return }
            for p in [q, k, v, names.outProjection] {
                try normal(p.weight, [d, d], std: std)
                try normal(p.bias, [d], std: 0.02)
            }
            for p in [names.layerNorm1, names.layerNorm2] {
                try constant(p.weight, [d], 1)
                try constant(p.bias, [d], 0)
            }
            try normal(names.fc1.weight, [e.intermediateSize, d], std: std)
            try normal(names.fc1.bias, [e.intermediateSize], std: 0.02)
            try normal(names.fc2.weight, [d, e.intermediateSize], std: 1 / Float(e.intermediateSize).squareRoot())
            try normal(names.fc2.bias, [d], std: 0.02)
        }
        typealias V = HFCLIPNames.Vision
        typealias T = HFCLIPNames.Text
        let v = c.vision, dv = v.encoder.hiddenSize
        try normal(V.patchEmbedding, [dv, v.channels, v.patchSize, v.patchSize], std: 0.02)
        try normal(V.classEmbedding, [dv], std: 0.02)
        try normal(V.positionEmbedding, [v.tokens, dv], std: 0.02)
        for p in [V.preLayerNorm, V.postLayerNorm] {
            try constant(p.weight, [dv], 1)
            try constant(p.bias, [dv], 0)
        }
        for i in 0..<v.encoder.layers { try block(V.layer(i), v.encoder) }
        try normal(HFCLIPNames.visualProjection, [c.projectionDim, dv], std: 1 / Float(dv).squareRoot())
        let t = c.text, dt = t.encoder.hiddenSize
        try normal(T.tokenEmbedding, [t.vocabSize, dt], std: 0.02)
        try normal(T.positionEmbedding, [t.maxPositions, dt], std: 0.01)
        try constant(T.finalLayerNorm.weight, [dt], 1)
        try constant(T.finalLayerNorm.bias, [dt], 0)
        for i in 0..<t.encoder.layers { try block(T.layer(i), t.encoder) }
        try normal(HFCLIPNames.textProjection, [c.projectionDim, dt], std: 1 / Float(dt).squareRoot())
        try constant(HFCLIPNames.logitScale, [], c.logitScaleInitValue)
        writer.metadata = ["format": "pt", "m2clip": "untrained random weights"]
        try writer.write(to: dir.appendingPathComponent("model.safetensors").path)

        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as! [String: Any]
        json["architectures"] = ["CLIPModel"]
        json["model_type"] = "clip"
        json["m2clip_untrained"] = true
        let configPath = dir.appendingPathComponent("config.json")
        do {
            try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
                .write(to: configPath, options: .atomic)
            if let bundled = BundledResources.tokenizerDirectory {
                for file in ["vocab.json", "merges.txt"] {
                    let target = dir.appendingPathComponent(file)
                    try? FileManager.default.removeItem(at: target)
                    try FileManager.default.copyItem(at: bundled.appendingPathComponent(file), to: target)
                }
            }
        } catch {
            throw CheckpointError(file: directory, "cannot write: \(error.localizedDescription)")
        }
    }

    /// An untrained M²-CLIP model file at `file`: a random CLIP checkpoint of `preset`
    /// converted with `labels` and T = `frames`; the intermediate checkpoint is removed. Its
    /// answers are meaningless, its cost and plumbing real (tests, benchmarks, demos).
    public static func writeModelFile(preset: Preset, seed: UInt64, labels: [String], frames: Int = 8,
                                      to file: String, context: ComputeContext) throws {
        let directory = file + ".clip-\(seed)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try write(configuration: preset.configuration, to: directory, seed: seed)
        try Conversion.convert(.huggingFace(directory: directory), options: .init(labels: labels, frames: frames),
                               output: file, context: context)
    }
}
