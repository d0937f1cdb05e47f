import Foundation
import Testing
@testable import M2Model
import Ops
import SafeTensors
@testable import Quantization

/// int8 model files: which tensors become int8, that the quantized model stays close to the
/// fp32 one, and that corrupted int8 data is refused at load.
@Suite(.serialized) struct QuantizerTests {
    /// A tiny fp32 model file made from a random CLIP, in a temporary directory.
    static let fp32: Result<String, Error> = Result {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-quant-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("fp32.m2c").path
        try RandomCheckpoint.writeModelFile(preset: .tiny, seed: 5, labels: ["juggling", "surfing", "playing cello", "singing"],
                                            frames: 4, to: path, context: try ComputeContext(threads: 2))
        return path
    }

    func quantized(fp32Layers: [Int] = []) throws -> String {
        let output = try Self.fp32.get().replacingOccurrences(of: "fp32.m2c", with: "int8-\(fp32Layers.count).m2c")
        try Quantizer(fp32Layers: fp32Layers).quantize(input: try Self.fp32.get(), output: output)
        return output
    }

    @Test func int8TensorsAreTheTowerWeights() throws {
        let file = try SafeTensorsFile(path: try quantized(fp32Layers: [1]))
        let int8 = Set(file.names.filter { file.info($0)!.dtype == .i8 })
        let visual = Set(int8.filter { $0.hasPrefix("visual.transformer.") })
        #expect(visual == ["visual.transformer.resblocks.0.attn.in_proj_weight",
                           "visual.transformer.resblocks.0.attn.out_proj.weight",
                           "visual.transformer.resblocks.0.mlp.c_fc.weight",
                           "visual.transformer.resblocks.0.mlp.c_proj.weight",
                           "visual.transformer.resblocks.0.adapter_pre_mlp.fc1.weight",
                           "visual.transformer.resblocks.0.adapter_pre_mlp.fc2.weight",
                           "visual.transformer.resblocks.0.adapter_pre_mlp.offset_adapter.fc1.weight",
                           "visual.transformer.resblocks.0.adapter_pre_mlp.offset_adapter.fc2.weight"])
        #expect(int8.contains("transformer.resblocks.1.mlp.c_fc.weight"))      // text tower
        #expect(int8.contains("visual.t_adapter.fc1.weight"))                   // temporal adapter
        #expect(!int8.contains("visual.adapter_fc.weight"))                     // VC head stays fp32
        #expect(file.info("token_embedding.weight")?.dtype == .f16)
        for name in int8 { #expect(file.info(name + "_scale")?.dtype == .f32) }
        let config = try JSONDecoder().decode(M2CLIPConfiguration.self, from: Data(file.metadata["m2clip.config"]!.utf8))
        #expect(config.quantization?.fp32Layers == [1])
    }

    @Test func quantizedModelStaysCloseToFP32() throws {
        let context = try ComputeContext(threads: 2)
        let reference = try ModelFile.load(path: try Self.fp32.get(), context: context)
        let int8 = try ModelFile.load(path: try quantized(), context: context)
        let inputs = try AccuracyReport.inputs(videos: [], frames: 4, imageSize: 32, count: 4)
        let report = AccuracyReport.compare(reference: reference, quantized: int8, inputs: inputs, sizes: (1, 1),
                                            context: context)
        // int8 weights and activations: the embedding stays within a few 1e-3 in cosine.
        #expect(report.videoEmbeddingCosineMin > 0.99, "\(report.videoEmbeddingCosineMin)")
        #expect(report.layerCosine.count == 2 && report.layerCosine.allSatisfy { $0 > 0.99 }, "\(report.layerCosine)")
    }

    @Test func fp16StorageLoadsAndMatches() throws {
        let context = try ComputeContext(threads: 2)
        let output = try Self.fp32.get().replacingOccurrences(of: "fp32.m2c", with: "fp16.m2c")
        let sizes = try Quantizer(target: .fp16).quantize(input: try Self.fp32.get(), output: output)
        #expect(sizes.output < sizes.input)
        let file = try SafeTensorsFile(path: output)
        #expect(file.info("visual.transformer.resblocks.0.mlp.c_fc.weight")?.dtype == .f16)
        let reference = try ModelFile.load(path: try Self.fp32.get(), context: context)
        let half = try ModelFile.load(path: output, context: context)
        #expect(half.configuration.quantization?.scheme == "fp16")
        let inputs = try AccuracyReport.inputs(videos: [], frames: 4, imageSize: 32, count: 2)
        let report = AccuracyReport.compare(reference: reference, quantized: half, inputs: inputs, sizes: sizes,
                                            context: context)
        #expect(report.videoEmbeddingCosineMin > 0.9999, "\(report.videoEmbeddingCosineMin)")
    }

    /// The towers' GEMM weights that `quantize --to fp16` stores in fp16: patch embedding,
    /// every block's qkv, out_proj and MLP, the text projection (visual.proj stays fp32).
    static func towerLinears(_ model: M2CLIPModel) -> [Linear] {
        func blocks(_ encoder: TransformerEncoder) -> [Linear] {
            encoder.layers.flatMap { [$0.qkv, $0.outProjection, $0.fc1, $0.fc2] }
        }
        return [model.vision.patchEmbedding, model.text.projection]
            + blocks(model.vision.encoder) + blocks(model.text.encoder)
    }

    /// An fp16 (bf16) model file keeps its Linear weights fp16 (bf16) in memory: every tower
    /// GEMM weight is a 16-bit layer in exactly half the fp32 layer's bytes, and the outputs
    /// stay those of the fp32 model up to the rounding of the weights: video embedding and
    /// every layer's CLS cosine > 0.9999 for both. bf16 keeps 8 significant bits against
    /// fp16's 11, a rounding step 8× larger, so 1 − cosine (quadratic in the error) should be
    /// ~64× fp16's; measured here: fp16 ~4e-8, bf16 ~4e-6 (min cosine 0.999995), which leaves
    /// bf16 a 25× margin under the 1e-4 bound.
    @Test(arguments: [Quantizer.Target.fp16, .bf16])
    func sixteenBitWeightsStayHalfInMemory(target: Quantizer.Target) throws {
        let context = try ComputeContext(threads: 2)
        let output = try Self.fp32.get().replacingOccurrences(of: "fp32.m2c", with: "\(target)-memory.m2c")
        let sizes = try Quantizer(target: target).quantize(input: try Self.fp32.get(), output: output)
        let file = try SafeTensorsFile(path: output)
        let dtype: DType = target == .bf16 ? .bf16 : .f16
        for name in ["visual.transformer.resblocks.0.mlp.c_fc.weight", "visual.conv1.weight",
                     "token_embedding.weight", "text_projection"] {
            #expect(file.info(name)?.dtype == dtype, "\(name): \(String(describing: file.info(name)?.dtype))")
        }
        let reference = try ModelFile.load(path: try Self.fp32.get(), context: context)
        let half = try ModelFile.load(path: output, context: context)
        #expect(half.configuration.quantization?.scheme == target.rawValue)
        let fp32Layers = Self.towerLinears(reference), halfLayers = Self.towerLinears(half)
        #expect(fp32Layers.allSatisfy { $0.precision == .fp32 })
        let precision: Linear.Precision = target == .bf16 ? .bf16 : .fp16
        #expect(halfLayers.allSatisfy { $0.precision == precision })
        let fp32Bytes = fp32Layers.map(\.packedBytes).reduce(0, +)
        let halfBytes = halfLayers.map(\.packedBytes).reduce(0, +)
        #expect(halfBytes * 2 == fp32Bytes, "\(target) \(halfBytes) bytes, fp32 \(fp32Bytes)")
        let inputs = try AccuracyReport.inputs(videos: [], frames: 4, imageSize: 32, count: 2)
        let report = AccuracyReport.compare(reference: reference, quantized: half, inputs: inputs, sizes: sizes,
                                            context: context)
        #expect(report.videoEmbeddingCosineMin > 0.9999, "\(target) \(report.videoEmbeddingCosineMin)")
        #expect(report.layerCosine.allSatisfy { $0 > 0.9999 }, "\(target) \(report.layerCosine)")
    }

    @Test func requantizingIsRefused() throws {
        let path = try quantized()
        #expect(throws: CheckpointError.self) { try Quantizer().quantize(input: path, output: path + ".again") }
    }

    /// Rewrites one tensor of a model file.
    func corrupt(_ path: String, tensor: String, _ edit: (inout [UInt8]) -> Void) throws -> String {
        let file = try SafeTensorsFile(path: path)
        var writer = SafeTensorsWriter(metadata: file.metadata)
        for name in file.names {
            let info = file.info(name)!
            var bytes = Array(try file.bytes(name))
            if name == tensor { edit(&bytes) }
            try writer.add(name: name, dtype: info.dtype, shape: info.shape, bytes: bytes)
        }
        let out = path + ".corrupt.m2c"
        try writer.write(to: out)
        return out
    }

    @Test func corruptedScalesAreRefused() throws {
        let name = "visual.transformer.resblocks.0.mlp.c_fc.weight_scale"
        let path = try corrupt(try quantized(), tensor: name) { bytes in
            let nan = Float.nan.bitPattern
            for i in 0..<4 { bytes[4 + i] = UInt8((nan >> (8 * UInt32(i))) & 0xff) }
        }
        do {
            _ = try ModelFile.load(path: path, context: try ComputeContext(threads: 1))
            Issue.record("a NaN scale loaded")
        } catch {
            #expect("\(error)".contains(name) && "\(error)".contains("channel 1"), "\(error)")
        }
    }

    @Test func corruptedInt8ValuesAreRefused() throws {
        let name = "visual.transformer.resblocks.0.attn.in_proj_weight"
        let path = try corrupt(try quantized(), tensor: name) { $0[7] = 0x80 } // -128
        do {
            _ = try ModelFile.load(path: path, context: try ComputeContext(threads: 1))
            Issue.record("a -128 weight loaded")
        } catch {
            #expect("\(error)".contains(name) && "\(error)".contains("-128"), "\(error)")
        }
    }
}

@Suite struct NearTieTests {
    /// A VC decision counts as decisive only when the fp32 lead is more than twice the largest
    /// logit change quantization made: anything closer is a tie the noise may flip.
    @Test func decisiveNeedsALeadAboveTwiceTheChange() {
        func clip(_ margin: Double, _ change: Double) -> AccuracyReport.Clip {
            var c = AccuracyReport.Clip(source: "x", videoEmbeddingCosine: 1, vcTop1Agrees: true, zeroShotTop1Agrees: true)
            c.vcTop1Margin = margin
            c.vcLogitMaxChange = change
            return c
        }
        #expect(clip(0.01, 0.001).vcDecisive == true)
        #expect(clip(0.01, 0.005).vcDecisive == false)
        #expect(clip(0.01, 0.004).vcDecisive == true)
        #expect(AccuracyReport.Clip(source: "x", videoEmbeddingCosine: 1, vcTop1Agrees: nil,
                                    zeroShotTop1Agrees: true).vcDecisive == nil)
    }
}
