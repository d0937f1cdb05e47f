import Foundation
import Ops
import SafeTensors

/// An adapters-only file: the trainable tensors of a model (`M2CLIPNames.isTrainable`, the
/// release's `'adapter' in name`, spec §9) as fp32 under the release's names, with the
/// configuration, the labels (and through the configuration the MLM words) and the
/// fingerprint of the frozen base in `__metadata__`. Combined with that base it gives the
/// model back; a different base is refused.
public enum AdapterFile {
    public static let formatVersion = "1"
    typealias Keys = M2CLIPNames.Metadata

    /// Writes the trainable tensors of the model file `model` to `output` (atomically).
    @discardableResult
    public static func write(model: String, to output: String) throws -> ReleaseExport.Summary {
        let file = try Conversion.open(model)
        _ = try ReleaseExport.modelConfiguration(file)
        var writer = SafeTensorsWriter()
        writer.metadata = [Keys.adaptersFormat: formatVersion,
                           Keys.configuration: file.metadata[Keys.configuration]!,
                           Keys.labels: try ReleaseExport.field(Keys.labels, of: file),
                           Keys.baseFingerprint: try fingerprint(file)]
        let added = try ReleaseExport.add(file.names.filter(M2CLIPNames.isTrainable), of: file, to: &writer)
        try ReleaseExport.write(writer, to: output)
        return ReleaseExport.Summary(tensors: added.tensors, parameters: added.parameters, widened: added.widened,
                                     bytes: ReleaseExport.fileSize(output))
    }

    /// SHA-256 over the frozen tensors of a model file (everything but the trainable ones and
    /// m2clip's own), in byte order of their names; per tensor: the name, 0x00, the dtype as
    /// the header spells it, 0x00, the shape as decimal dimensions joined by ",", 0x00, the
    /// stored bytes. A base quantized or stored in another precision has another fingerprint.
    public static func fingerprint(_ file: SafeTensorsFile) throws -> String {
        let frozen = file.names.filter { !M2CLIPNames.isTrainable($0) && !M2CLIPNames.isM2CLIPOnly($0) }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var hash = SHA256()
        for name in frozen {
            let info = file.info(name)!
            hash.update(Array(name.utf8) + [0] + Array(info.dtype.rawValue.utf8) + [0]
                        + Array(info.shape.map(String.init).joined(separator: ",").utf8) + [0])
            do {
                hash.update(try file.bytes(name))
            } catch let error as SafeTensorsError {
                throw CheckpointError(file: file.path, tensor: name, error.message)
            }
            file.releasePages(name)
        }
        return hash.finalize()
    }

    /// Writes the model file `output`: the frozen tensors of `base` byte for byte, the
    /// trainable ones of `adapters`, the adapters file's configuration and labels, and label
    /// embeddings recomputed with the combined text tower. Refuses a base whose fingerprint is
    /// not the one the adapters were exported with.
    @discardableResult
    public static func combine(base: String, adapters: String, output: String,
                               context: ComputeContext) throws -> M2CLIPModel {
        let adapterFile = try Conversion.open(adapters)
        guard adapterFile.metadata[Keys.adaptersFormat] == formatVersion else {
            throw CheckpointError(file: adapters, "not an m2clip adapters file (m2clip export --adapters writes them): __metadata__ \(Keys.adaptersFormat) is \(adapterFile.metadata[Keys.adaptersFormat] ?? "missing"), expected \(formatVersion)")
        }
        var configuration = try ReleaseExport.decode(M2CLIPConfiguration.self, Keys.configuration, of: adapterFile)
        let labels = try ReleaseExport.decode([String].self, Keys.labels, of: adapterFile)
        let expected = try ReleaseExport.field(Keys.baseFingerprint, of: adapterFile)
        if let frozen = adapterFile.names.first(where: { !M2CLIPNames.isTrainable($0) }) {
            throw CheckpointError(file: adapters, tensor: frozen, "is not a trainable tensor: an adapters file holds only names with 'adapter'")
        }

        let baseFile = try Conversion.open(base)
        let baseConfiguration = try ReleaseExport.modelConfiguration(baseFile)
        let actual = try fingerprint(baseFile)
        guard actual == expected else {
            throw CheckpointError(file: base, "frozen weights have fingerprint \(actual), but the adapters file \(adapters) was exported from a base with fingerprint \(expected): not the base these adapters were trained on")
        }
        // The fingerprint covers the weights; the precision they are stored in is the base's.
        configuration.quantization = baseConfiguration.quantization

        let frozen = baseFile.names.filter { !M2CLIPNames.isTrainable($0) && !M2CLIPNames.isM2CLIPOnly($0) }
        let store = TensorStore(origin: adapters)
        for (file, names) in [(baseFile, frozen), (adapterFile, adapterFile.names)] {
            for name in names {
                do {
                    store.set(name, shape: file.info(name)!.shape, values: try file.floats(name))
                } catch let error as SafeTensorsError {
                    throw CheckpointError(file: file.path, tensor: name, error.message)
                }
            }
        }
        try configuration.validate(source: adapters)
        try CMLMTensors.check(store, configuration: configuration)
        let tokenizer = TokenizerFileContents(
            vocabularyJSON: Array(try ReleaseExport.field(Keys.tokenizerVocabulary, of: baseFile).utf8),
            merges: Array(try ReleaseExport.field(Keys.tokenizerMerges, of: baseFile).utf8), source: base)
        let model = try M2CLIPModel(configuration: configuration, reader: WeightReader(source: store),
                                    tokenizerFiles: tokenizer, labels: labels, labelEmbeddings: nil, context: context)

        var writer = SafeTensorsWriter()
        for name in frozen {
            let info = baseFile.info(name)!
            try writer.add(name: name, dtype: info.dtype, shape: info.shape, bytes: try baseFile.bytes(name))
        }
        for name in adapterFile.names {
            try writer.add(name: name, shape: adapterFile.info(name)!.shape, floats: try store.floats(name))
        }
        try ModelFile.finish(&writer, model: model, path: output)
        return model
    }
}
