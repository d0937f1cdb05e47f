import Foundation
import SafeTensors

/// A checkpoint split into several safetensors files, as `save_pretrained` writes large
/// models: `model.safetensors.index.json` maps every tensor name to its shard.
final class ShardedTensors: TensorSource {
    let origin: String
    let tensorNames: [String]
    private let shardOf: [String: SafeTensorsFile]

    /// Opens the index and every shard it names; a shard that is missing, or that lacks a
    /// tensor the index puts in it, is an error naming both.
    init(indexPath: String) throws {
        origin = indexPath
        guard let data = FileManager.default.contents(atPath: indexPath) else {
            throw CheckpointError(file: indexPath, "cannot read the shard index")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = json["weight_map"] as? [String: String] else {
            throw CheckpointError(file: indexPath, "invalid shard index: expected {\"weight_map\": {tensor: file}}")
        }
        let directory = URL(fileURLWithPath: indexPath).deletingLastPathComponent()
        var shards: [String: SafeTensorsFile] = [:]
        var shardOf: [String: SafeTensorsFile] = [:]
        for (name, file) in map {
            guard !file.contains("/") else {
                throw CheckpointError(file: indexPath, tensor: name, "shard \"\(file)\" is not a file name in the checkpoint directory")
            }
            let shard: SafeTensorsFile
            if let open = shards[file] {
                shard = open
            } else {
                let path = directory.appendingPathComponent(file).path
                do {
                    shard = try SafeTensorsFile(path: path)
                } catch let error as SafeTensorsError {
                    throw CheckpointError(file: path, tensor: error.tensor, error.message)
                }
                shards[file] = shard
            }
            guard shard.contains(name) else {
                throw CheckpointError(file: shard.path, tensor: name, "missing, though \(URL(fileURLWithPath: indexPath).lastPathComponent) puts it in this shard")
            }
            shardOf[name] = shard
        }
        self.shardOf = shardOf
        tensorNames = map.keys.sorted()
    }

    func shape(of name: String) -> [Int]? { shardOf[name]?.shape(of: name) }
    func dtype(of name: String) -> DType? { shardOf[name]?.dtype(of: name) }
    func release(_ name: String) { shardOf[name]?.release(name) }

    func floats(_ name: String) throws -> [Float] {
        guard let shard = shardOf[name] else { throw CheckpointError(file: origin, tensor: name, "missing") }
        return try shard.floats(name)
    }

    func int8s(_ name: String) throws -> [Int8] {
        guard let shard = shardOf[name] else { throw CheckpointError(file: origin, tensor: name, "missing") }
        return try shard.int8s(name)
    }

    func bits16(_ name: String) throws -> [UInt16] {
        guard let shard = shardOf[name] else { throw CheckpointError(file: origin, tensor: name, "missing") }
        return try shard.bits16(name)
    }
}

/// The weights of a Hugging Face checkpoint directory: `model.safetensors`, or the shards of
/// `model.safetensors.index.json`.
enum HuggingFaceWeights {
    static func open(directory: String) throws -> TensorSource {
        let dir = URL(fileURLWithPath: directory)
        let single = dir.appendingPathComponent("model.safetensors").path
        let index = dir.appendingPathComponent("model.safetensors.index.json").path
        let fm = FileManager.default
        if fm.fileExists(atPath: single) {
            do {
                return try SafeTensorsFile(path: single)
            } catch let error as SafeTensorsError {
                throw CheckpointError(file: single, tensor: error.tensor, error.message)
            }
        }
        if fm.fileExists(atPath: index) { return try ShardedTensors(indexPath: index) }
        let hasPickle = fm.fileExists(atPath: dir.appendingPathComponent("pytorch_model.bin").path)
        throw CheckpointError(file: single, hasPickle
            ? "missing; only pytorch_model.bin is present: convert it to safetensors first"
            : "missing (nor is there a model.safetensors.index.json)")
    }
}
