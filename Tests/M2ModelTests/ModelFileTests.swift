import Foundation
import Testing
import SafeTensors
import Ops
@testable import M2Model

/// Model files (.m2c) and conversion: placement read off the release's names, a round trip
/// through a file that keeps the outputs of the reference, and refusals that name the file.
@Suite struct ModelFileTests {
    static let fixture = "m2clip-tiny"

    /// The tiny fixture's CLIP sizes (4 heads of 8: not OpenAI's 64-wide heads).
    static let clip = CLIPConfiguration(
        projectionDim: 24,
        text: CLIPTextConfiguration(hiddenSize: 32, intermediateSize: 128, heads: 4, layers: 2, vocabSize: 1000,
                                    maxPositions: 77, eosTokenID: 2),
        vision: CLIPVisionConfiguration(hiddenSize: 32, intermediateSize: 128, heads: 4, layers: 2,
                                        imageSize: 32, patchSize: 8))

    func labels() -> [String] { ["a", "b", "c", "d", "e"] }

    /// The fixture's release weights without the CMLM block and MLM head: its 24-wide video
    /// embeddings cannot feed its 32-wide CMLM block (no real CLIP has such widths), so the
    /// import refuses the file as it is.
    static func fixtureWithoutCMLM(in dir: TemporaryDirectory) throws -> SafeTensorsFile {
        let file = try SafeTensorsFile(path: fixturePath("\(fixture)/weights.safetensors"))
        var writer = SafeTensorsWriter()
        for name in file.names where !CMLMTensors.isTrainingOnly(name, textLayers: clip.text.encoder.layers) {
            let info = file.info(name)!
            try writer.add(name: name, dtype: info.dtype, shape: info.shape, bytes: try file.bytes(name))
        }
        let path = dir.url.appendingPathComponent("weights.safetensors").path
        try writer.write(to: path)
        return try SafeTensorsFile(path: path)
    }

    @Test func cmlmPartsNeedEqualWidths() throws {
        let file = try SafeTensorsFile(path: fixturePath("\(Self.fixture)/weights.safetensors"))
        do {
            _ = try Conversion.inferM2CLIP(file, options: .init(labels: labels(), clip: Self.clip))
            Issue.record("a CMLM block of width 32 over video embeddings of 24 was accepted")
        } catch {
            #expect("\(error)".contains("width 32") && "\(error)".contains("width 24"), "\(error)")
        }
    }

    @Test func placementIsReadOffTheReleaseNames() throws {
        let dir = try TemporaryDirectory()
        let file = try Self.fixtureWithoutCMLM(in: dir)
        let c = try Conversion.inferM2CLIP(file, options: .init(labels: labels(), clip: Self.clip))
        #expect(c.ted.positions == [.preAttention, .preMLP])
        #expect(c.ted.layers == [0, 1])
        #expect(c.ted.width == 16)
        #expect(c.ted.temporalEnhancement && c.ted.temporalDifference)
        #expect(c.postAdapter == PostAdapterConfiguration(enabled: true, width: 12))
        #expect(c.textAdapter == TextAdapterConfiguration(layers: [1], width: 16))
        #expect(c.classes == 5 && c.vcHeadTrained)
        #expect(c.cmlm == nil) // none could be created at these widths

        #expect(throws: CheckpointError.self) {
            _ = try Conversion.inferM2CLIP(file, options: .init(labels: labels(), preset: .k400, clip: Self.clip))
        }
        #expect(throws: CheckpointError.self) { // 5 classes, 2 labels
            _ = try Conversion.inferM2CLIP(file, options: .init(labels: ["x", "y"], clip: Self.clip))
        }
    }

    @Test func roundTripThroughAFileKeepsTheReferenceOutputs() throws {
        let context = try ComputeContext(threads: 2)
        let dir = try TemporaryDirectory()
        let source = try Self.fixtureWithoutCMLM(in: dir)
        var configuration = try Conversion.inferM2CLIP(source, options: .init(labels: labels(), clip: Self.clip))
        configuration.frames = 3
        let weights = try Conversion.copy(source, keeping: { _ in true })
        let tokenizer = try TokenizerFileContents.read(directory: BundledResources.tokenizerDirectory!.path)
        let model = try M2CLIPModel(configuration: configuration, reader: WeightReader(source: weights),
                                    tokenizerFiles: tokenizer, labels: [], labelEmbeddings: [], context: context)
        let reference = try SafeTensorsFile(path: fixturePath("\(Self.fixture)/reference.safetensors"))
        let textEmbeddings = try reference.floats("case.preattn_premlp.label_text_embeds")
        model.setLabels(labels(), embeddings: (0..<5).map { Array(textEmbeddings[($0 * 24)..<($0 * 24 + 24)]) })

        let path = dir.url.appendingPathComponent("tiny.m2c").path
        try ModelFile.write(path: path, model: model, weights: weights)
        let loaded = try ModelFile.load(path: path, context: context)
        #expect(loaded.labels == labels())
        #expect(loaded.configuration == configuration)

        let pixels = try reference.floats("case.preattn_premlp.pixel_values")
        let input = Tensor(shape: [3, 3, 32, 32], values: pixels)
        let output = loaded(pixels: input.data, clips: 1, frames: 3, context: context)[0]
        expectClose(output.videoEmbedding, try reference.floats("case.preattn_premlp.video_embed"), absTol: 1e-4,
                    "video_embed after a model-file round trip")
        expectClose(output.labelScores, try reference.floats("case.preattn_premlp.label_scores"), absTol: 1e-5,
                    "label_scores after a model-file round trip")
        expectClose(try #require(output.vcLogits), try reference.floats("case.preattn_premlp.vc_logits"), absTol: 1e-4,
                    "vc_logits after a model-file round trip")
    }

    @Test func notAModelFileIsRefused() throws {
        let context = try ComputeContext(threads: 1)
        let path = fixturePath("tiny-clip/model.safetensors")
        do {
            _ = try ModelFile.load(path: path, context: context)
            Issue.record("a CLIP checkpoint loaded as a model file")
        } catch {
            #expect("\(error)".contains("not an m2clip model file"), "\(error)")
            #expect("\(error)".contains(path))
        }
    }

    @Test func brokenMetadataIsNamed() throws {
        let dir = try TemporaryDirectory()
        let path = dir.url.appendingPathComponent("bad.m2c").path
        var writer = SafeTensorsWriter()
        try writer.add(name: "x", shape: [1], floats: [1])
        writer.metadata = [M2CLIPNames.Metadata.format: "1", M2CLIPNames.Metadata.configuration: "{\"clip\": 3}",
                           M2CLIPNames.Metadata.labels: "[]", M2CLIPNames.Metadata.tokenizerVocabulary: "{}",
                           M2CLIPNames.Metadata.tokenizerMerges: ""]
        try writer.write(to: path)
        do {
            _ = try ModelFile.load(path: path, context: try ComputeContext(threads: 1))
            Issue.record("loaded")
        } catch {
            #expect("\(error)".contains("m2clip.config"), "\(error)")
        }
    }

    @Test func labelFilesParse() throws {
        let dir = try TemporaryDirectory()
        let csv = dir.url.appendingPathComponent("l.csv")
        try "id,name\n1,\"b, with comma\"\n0,a\n".write(to: csv, atomically: true, encoding: .utf8)
        #expect(try LabelSet.load(path: csv.path) == ["a", "b, with comma"])
        let plain = dir.url.appendingPathComponent("l.txt")
        try "x\n\n y \n".write(to: plain, atomically: true, encoding: .utf8)
        #expect(try LabelSet.load(path: plain.path) == ["x", "y"])
        let gap = dir.url.appendingPathComponent("gap.csv")
        try "id,name\n0,a\n2,c\n".write(to: gap, atomically: true, encoding: .utf8)
        #expect(throws: CheckpointError.self) { _ = try LabelSet.load(path: gap.path) }
        let k400Path = Self.sharedRoot + "/data/labels/kinetics_400_labels.csv"
        if FileManager.default.fileExists(atPath: k400Path) {
            let k400 = try LabelSet.load(path: k400Path)
            #expect(k400.count == 400 && k400[0] == "abseiling")
        }
    }

    /// ../shared beside the checkout (CI lays it there too).
    static let sharedRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared").path
}
