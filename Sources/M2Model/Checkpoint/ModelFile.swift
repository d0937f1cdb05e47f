import Foundation
import Ops
import SafeTensors

/// m2clip's model file (`.m2c`): one safetensors file with the weights under the authors'
/// release names (spec §8), the cached label text embeddings as the tensor
/// `m2clip.label_text_embeds`, and in `__metadata__` the configuration (JSON), the labels
/// (JSON array) and the tokenizer's vocab.json and merges.txt — everything the daemon needs.
/// fp32 files also keep what training needs: the CMLM block (text block `text layers`), its
/// adapters and the MLM head (`mlm_adapter.*`), described by the configuration's `cmlm`.
public enum ModelFile {
    public static let formatVersion = "1"
    typealias Keys = M2CLIPNames.Metadata

    /// Loads a model file.
    /// - Parameter fp32: widen F16/BF16 weights to fp32 (what training needs).
    public static func load(path: String, context: ComputeContext, fp32: Bool = false) throws -> M2CLIPModel {
        let reader = try WeightReader(path: path)
        reader.widensSixteenBit = fp32
        guard let file = reader.source as? SafeTensorsFile else { fatalError("WeightReader(path:) reads a file") }
        let meta = file.metadata
        func field(_ key: String) throws -> String {
            guard let value = meta[key] else {
                throw CheckpointError(file: path, "not an m2clip model file: __metadata__ has no \(key)")
            }
            return value
        }
        guard try field(Keys.format) == formatVersion else {
            throw CheckpointError(file: path, "model file format \(meta[Keys.format] ?? "?") is not supported (expected \(formatVersion))")
        }
        let configuration: M2CLIPConfiguration
        do {
            configuration = try JSONDecoder().decode(M2CLIPConfiguration.self, from: Data(try field(Keys.configuration).utf8))
        } catch let error as DecodingError {
            throw CheckpointError(file: path, "__metadata__ \(Keys.configuration): \(CheckpointError.describe(error))")
        }
        let labels: [String]
        do {
            labels = try JSONDecoder().decode([String].self, from: Data(try field(Keys.labels).utf8))
        } catch let error as DecodingError {
            throw CheckpointError(file: path, "__metadata__ \(Keys.labels): \(CheckpointError.describe(error))")
        }
        let tokenizer = TokenizerFileContents(vocabularyJSON: Array(try field(Keys.tokenizerVocabulary).utf8),
                                              merges: Array(try field(Keys.tokenizerMerges).utf8),
                                              source: path)
        let embeddings = try reader.floats(M2CLIPNames.labelTextEmbeddings,
                                           shape: [labels.count, configuration.clip.projectionDim])
        // Inference skips the training-only CMLM parts; a file whose configuration claims
        // them must still hold them (a truncated or mismatched file is named here).
        try configuration.validate(source: path)
        try CMLMTensors.check(reader.source, configuration: configuration)
        return try M2CLIPModel(configuration: configuration, reader: reader, tokenizerFiles: tokenizer,
                               labels: labels, labelEmbeddings: embeddings, context: context)
    }

    /// Writes a model file from weights under the release names (atomically: a crash or a
    /// full disk never leaves a half-written file at `path`).
    static func write(path: String, model: M2CLIPModel, weights: TensorSource) throws {
        var writer = SafeTensorsWriter()
        for name in weights.tensorNames where name != M2CLIPNames.labelTextEmbeddings {
            guard let shape = weights.shape(of: name) else { continue }
            try writer.add(name: name, shape: shape, floats: try weights.floats(name))
        }
        try finish(&writer, model: model, path: path)
    }

    /// Rewrites a model file with the model's current labels, template and label embeddings,
    /// copying every other tensor byte for byte.
    public static func updateLabels(path: String, model: M2CLIPModel) throws {
        let source: SafeTensorsFile
        do {
            source = try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: error.tensor, error.message)
        }
        var writer = SafeTensorsWriter()
        for name in source.names where name != M2CLIPNames.labelTextEmbeddings {
            let info = source.info(name)!
            try writer.add(name: name, dtype: info.dtype, shape: info.shape, bytes: try source.bytes(name))
        }
        try finish(&writer, model: model, path: path)
    }

    /// Writes `base` with the tensors of `replacing` (release names, written fp32) and the
    /// model's current labels, template and label embeddings, every other tensor copied byte
    /// for byte: a trained model from the model it started from. Atomic, like every write.
    public static func write(path: String, base: String, replacing: [String: (shape: [Int], values: [Float])],
                             model: M2CLIPModel) throws {
        try write(path: path, base: base, replacing: replacing, reshaping: false, model: model)
    }

    /// `write(path:base:replacing:model:)`; with `reshaping`, a replaced tensor may change its
    /// shape (a resized head).
    static func write(path: String, base: String, replacing: [String: (shape: [Int], values: [Float])],
                      reshaping: Bool, model: M2CLIPModel) throws {
        let source: SafeTensorsFile
        do {
            source = try SafeTensorsFile(path: base)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: base, tensor: error.tensor, error.message)
        }
        var writer = SafeTensorsWriter()
        for name in source.names where name != M2CLIPNames.labelTextEmbeddings {
            let info = source.info(name)!
            if let new = replacing[name] {
                guard reshaping || new.shape == info.shape else {
                    throw CheckpointError(file: base, tensor: name, "has shape \(info.shape), the new values \(new.shape)")
                }
                try writer.add(name: name, shape: new.shape, floats: new.values)
            } else {
                try writer.add(name: name, dtype: info.dtype, shape: info.shape, bytes: try source.bytes(name))
            }
        }
        if let missing = replacing.keys.sorted().first(where: { !source.contains($0) }) {
            throw CheckpointError(file: base, tensor: missing, "is not in the model file")
        }
        try finish(&writer, model: model, path: path)
    }

    /// Adds the label embeddings and the metadata, and writes.
    static func finish(_ writer: inout SafeTensorsWriter, model: M2CLIPModel, path: String) throws {
        try writer.add(name: M2CLIPNames.labelTextEmbeddings,
                       shape: [model.labels.count, model.configuration.clip.projectionDim],
                       floats: model.labelEmbeddings.array)
        writer.metadata = try metadata(for: model)
        do {
            try writer.write(to: path)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, "cannot write: \(error.message)")
        }
    }

    static func metadata(for model: M2CLIPModel) throws -> [String: String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [
            Keys.format: formatVersion,
            Keys.configuration: String(decoding: try encoder.encode(model.configuration), as: UTF8.self),
            Keys.labels: String(decoding: try encoder.encode(model.labels), as: UTF8.self),
            Keys.tokenizerVocabulary: String(decoding: model.tokenizerFiles.vocabularyJSON, as: UTF8.self),
            Keys.tokenizerMerges: String(decoding: model.tokenizerFiles.merges, as: UTF8.self),
        ]
    }
}
