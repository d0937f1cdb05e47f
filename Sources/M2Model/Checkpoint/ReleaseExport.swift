import Foundation
import SafeTensors

/// A model file written back out as the state dict of the authors' M²-CLIP release (spec §8),
/// so that the release's PyTorch code can load it and train on (`load_state_dict`).
///
/// A model file already keeps every tensor under the release's name and in the release's
/// layout (Conversion copies release tensors unchanged and creates fresh ones in that layout:
/// TE conv (r, 1, 3), TD conv (r, 1, 1, 3, 3), projections (in, out), the CMLM block as text
/// block `layers`), so the export drops m2clip's own tensors and widens 16-bit weights to fp32;
/// nothing is reshaped. Re-importing the export (`Conversion.Source.authors`) gives the model
/// back: the labels and the configuration ride along in `__metadata__`.
public enum ReleaseExport {
    typealias Keys = M2CLIPNames.Metadata

    /// What an export wrote.
    public struct Summary: Sendable {
        public let tensors: Int
        public let parameters: Int
        /// Tensors stored as F16 or BF16 in the model file and written as fp32.
        public let widened: Int
        public let bytes: Int
    }

    /// The labels and configuration an m2clip export carries in its `__metadata__`.
    public struct Carried: Sendable {
        public let labels: [String]
        public let configuration: M2CLIPConfiguration
    }

    /// Writes the release's state dict of the model file `model` to `output` (fp32,
    /// atomically). Refuses an int8 model (its weights are no longer the release's).
    @discardableResult
    public static func writeStateDict(model: String, to output: String) throws -> Summary {
        let file = try Conversion.open(model)
        let configuration = try modelConfiguration(file)
        guard configuration.cmlm != nil else {
            throw CheckpointError(file: model, "has no CMLM block or MLM head (quantized without --keep-training-parts?), which the release's state dict holds: export the fp32 model")
        }
        var writer = SafeTensorsWriter()
        writer.metadata = [Keys.configuration: file.metadata[Keys.configuration]!,
                           Keys.labels: try field(Keys.labels, of: file)]
        let summary = try add(file.names.filter { !M2CLIPNames.isM2CLIPOnly($0) }, of: file, to: &writer)
        try write(writer, to: output)
        return Summary(tensors: summary.tensors, parameters: summary.parameters, widened: summary.widened,
                       bytes: fileSize(output))
    }

    /// The labels and configuration of an m2clip export, or nil for a state dict from
    /// elsewhere (the release's own `.pth` converted to safetensors carries none).
    public static func carried(_ path: String) throws -> Carried? {
        try carried(Conversion.open(path))
    }

    static func carried(_ file: SafeTensorsFile) throws -> Carried? {
        guard file.metadata[Keys.configuration] != nil, file.metadata[Keys.labels] != nil else { return nil }
        return Carried(labels: try decode([String].self, Keys.labels, of: file),
                       configuration: try decode(M2CLIPConfiguration.self, Keys.configuration, of: file))
    }

    // MARK: - shared with AdapterFile

    /// The configuration of a model file, refusing an int8 one (say which tensor).
    static func modelConfiguration(_ file: SafeTensorsFile) throws -> M2CLIPConfiguration {
        guard file.metadata[Keys.format] != nil else {
            throw CheckpointError(file: file.path, "not an m2clip model file: __metadata__ has no \(Keys.format)")
        }
        let configuration = try decode(M2CLIPConfiguration.self, Keys.configuration, of: file)
        if let int8 = file.names.first(where: { file.info($0)!.dtype == .i8 }) {
            throw CheckpointError(file: file.path, tensor: int8,
                                  "is int8: a quantized model cannot be exported, export the fp32 model it was quantized from")
        }
        return configuration
    }

    /// Adds `names` of `file` to `writer` as fp32.
    static func add(_ names: [String], of file: SafeTensorsFile,
                    to writer: inout SafeTensorsWriter) throws -> (tensors: Int, parameters: Int, widened: Int) {
        var parameters = 0, widened = 0
        for name in names {
            let info = file.info(name)!
            guard info.dtype.isConvertibleToFloat else {
                throw CheckpointError(file: file.path, tensor: name, "has dtype \(info.dtype), expected a floating-point tensor")
            }
            do {
                try writer.add(name: name, shape: info.shape, floats: try file.floats(name))
            } catch let error as SafeTensorsError {
                throw CheckpointError(file: file.path, tensor: name, error.message)
            }
            file.releasePages(name)
            parameters += info.elementCount
            if info.dtype == .f16 || info.dtype == .bf16 { widened += 1 }
        }
        return (names.count, parameters, widened)
    }

    static func write(_ writer: SafeTensorsWriter, to path: String) throws {
        do {
            try writer.write(to: path)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, "cannot write: \(error.message)")
        }
    }

    static func field(_ key: String, of file: SafeTensorsFile) throws -> String {
        guard let value = file.metadata[key] else {
            throw CheckpointError(file: file.path, "__metadata__ has no \(key)")
        }
        return value
    }

    static func decode<T: Decodable>(_ type: T.Type, _ key: String, of file: SafeTensorsFile) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(try field(key, of: file).utf8))
        } catch let error as DecodingError {
            throw CheckpointError(file: file.path, "__metadata__ \(key): \(CheckpointError.describe(error))")
        }
    }

    static func fileSize(_ path: String) -> Int {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }
}
