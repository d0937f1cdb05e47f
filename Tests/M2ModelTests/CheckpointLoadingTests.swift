import Foundation
import Testing
import SafeTensors
import Ops
@testable import M2Model

/// A broken checkpoint is refused with one line naming the file and the tensor or field,
/// never a crash.
@Suite struct CheckpointLoadingTests {
    let context: ComputeContext

    init() throws { context = try ComputeContext(threads: 1) }

    /// A copy of the tiny fixture, in which the test can break one thing.
    func copyOfFixture() throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        for file in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: fixturePath("tiny-clip/\(file)"),
                                             toPath: dir.url.appendingPathComponent(file).path)
        }
        return dir
    }

    /// Rewrites model.safetensors through `edit`, which receives every (name, shape, values).
    func rewriteWeights(in dir: TemporaryDirectory,
                        _ edit: (inout [(name: String, shape: [Int], values: [Float])]) -> Void) throws {
        let path = dir.url.appendingPathComponent("model.safetensors").path
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        do {
            let file = try SafeTensorsFile(path: path)
            for name in file.names {
                tensors.append((name, file.info(name)!.shape, try file.floats(name)))
            }
        }
        edit(&tensors)
        var writer = SafeTensorsWriter()
        for t in tensors { try writer.add(name: t.name, shape: t.shape, floats: t.values) }
        try writer.write(to: path)
    }

    func loadError(_ dir: TemporaryDirectory) -> String? {
        do {
            _ = try CLIPModel(directory: dir.path, context: context)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func intactCopyLoads() throws {
        #expect(loadError(try copyOfFixture()) == nil)
    }

    @Test(arguments: [8, 100, 5000, 200_000])
    func truncatedWeightsAreRefused(keepBytes: Int) throws {
        let dir = try copyOfFixture()
        let path = dir.url.appendingPathComponent("model.safetensors").path
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(keepBytes).write(to: URL(fileURLWithPath: path))
        let message = try #require(loadError(dir))
        #expect(message.contains("model.safetensors"), "\(message)")
        #expect(!message.contains("\n"))
    }

    @Test func corruptedHeaderIsRefused() throws {
        let dir = try copyOfFixture()
        let path = dir.url.appendingPathComponent("model.safetensors").path
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        for i in 8..<40 { data[i] = 0x7b } // "{{{{…" inside the JSON header
        try data.write(to: URL(fileURLWithPath: path))
        let message = try #require(loadError(dir))
        #expect(message.contains("model.safetensors"), "\(message)")
    }

    @Test func misShapedTensorIsNamed() throws {
        let dir = try copyOfFixture()
        let name = "vision_model.encoder.layers.1.mlp.fc1.weight"
        try rewriteWeights(in: dir) { tensors in
            let i = tensors.firstIndex { $0.name == name }!
            tensors[i].shape = [48, 96]
        }
        let message = try #require(loadError(dir))
        #expect(message.contains("tensor \(name): has shape [48, 96], expected [96, 48]"), "\(message)")
    }

    @Test func missingTensorIsNamed() throws {
        let dir = try copyOfFixture()
        let name = "text_model.encoder.layers.0.self_attn.k_proj.bias"
        try rewriteWeights(in: dir) { $0.removeAll { $0.name == name } }
        let message = try #require(loadError(dir))
        #expect(message.contains("tensor \(name): missing"), "\(message)")
    }

    @Test func unexpectedTensorIsNamed() throws {
        let dir = try copyOfFixture()
        try rewriteWeights(in: dir) { $0.append((name: "vision_model.encoder.layers.2.mlp.fc1.weight", shape: [2], values: [1, 2])) }
        let message = try #require(loadError(dir))
        #expect(message.contains("tensor vision_model.encoder.layers.2.mlp.fc1.weight: unexpected"), "\(message)")
    }

    @Test func malformedConfigIsNamed() throws {
        let dir = try copyOfFixture()
        let config = dir.url.appendingPathComponent("config.json")
        try Data("{\"projection_dim\": 24, \"vision_config\": {\"hidden_size\": \"wide\"}}".utf8).write(to: config)
        let typeMessage = try #require(loadError(dir))
        #expect(typeMessage.contains("config.json") && typeMessage.contains("vision_config.hidden_size"), "\(typeMessage)")

        try Data("{\"projection_dim\": 24,".utf8).write(to: config)
        let jsonMessage = try #require(loadError(dir))
        #expect(jsonMessage.contains("config.json") && jsonMessage.contains("invalid JSON"), "\(jsonMessage)")

        try Data("{\"vision_config\": {\"hidden_size\": 48, \"num_attention_heads\": 5}}".utf8).write(to: config)
        let headsMessage = try #require(loadError(dir))
        #expect(headsMessage.contains("vision_config.num_attention_heads"), "\(headsMessage)")

        try Data("{\"text_config\": {\"hidden_act\": \"relu\"}}".utf8).write(to: config)
        let actMessage = try #require(loadError(dir))
        #expect(actMessage.contains("text_config.hidden_act"), "\(actMessage)")
    }

    @Test func missingFilesAreNamed() throws {
        let dir = try copyOfFixture()
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("model.safetensors"))
        #expect(loadError(dir)?.contains("model.safetensors: missing") == true)
        let empty = try TemporaryDirectory()
        #expect(loadError(empty)?.contains("config.json: missing") == true)
        let absent = empty.path + "/absent"
        #expect(throws: CheckpointError.self) { _ = try CLIPModel(directory: absent, context: context) }
    }

    /// The fixture split into two shards with an index, as save_pretrained does for big models.
    func shardedCopy() throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: fixturePath("tiny-clip/config.json"),
                                         toPath: dir.url.appendingPathComponent("config.json").path)
        let file = try SafeTensorsFile(path: fixturePath("tiny-clip/model.safetensors"))
        var shards = [SafeTensorsWriter(), SafeTensorsWriter()]
        var map: [String: String] = [:]
        for (i, name) in file.names.enumerated() {
            let info = file.info(name)!
            try shards[i % 2].add(name: name, dtype: info.dtype, shape: info.shape, bytes: try file.bytes(name))
            map[name] = "model-0000\(i % 2 + 1)-of-00002.safetensors"
        }
        for i in 0..<2 {
            try shards[i].write(to: dir.url.appendingPathComponent("model-0000\(i + 1)-of-00002.safetensors").path)
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": [:] as [String: String], "weight_map": map])
        try index.write(to: dir.url.appendingPathComponent("model.safetensors.index.json"))
        return dir
    }

    @Test func shardedCheckpointLoadsAndMatches() throws {
        let dir = try shardedCopy()
        let sharded = try CLIPModel(directory: dir.path, context: context)
        let single = try CLIPModel(directory: fixturePath("tiny-clip"), context: context)
        let reference = try SafeTensorsFile(path: fixturePath("tiny-clip/reference.safetensors"))
        let shape = reference.info("pixel_values")!.shape
        let input = Tensor(shape: shape, values: try reference.floats("pixel_values"))
        #expect(sharded.vision!(pixels: input.data, frames: shape[0], context: context).array
                == single.vision!(pixels: input.data, frames: shape[0], context: context).array)
    }

    @Test func missingShardIsNamed() throws {
        let dir = try shardedCopy()
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent("model-00002-of-00002.safetensors"))
        let message = try #require(loadError(dir))
        #expect(message.contains("model-00002-of-00002.safetensors"), "\(message)")
    }

    @Test func bf16WeightsLoad() throws {
        let dir = try copyOfFixture()
        let path = dir.url.appendingPathComponent("model.safetensors").path
        let file = try SafeTensorsFile(path: path)
        var writer = SafeTensorsWriter()
        for name in file.names {
            try writer.add(name: name, shape: file.info(name)!.shape, bfloat16s: try file.floats(name))
        }
        try writer.write(to: path)
        #expect(loadError(dir) == nil)
    }
}
