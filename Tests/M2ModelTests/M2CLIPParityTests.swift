import Foundation
import Testing
import SafeTensors
import Ops
@testable import M2Model

/// M²-CLIP against the independent PyTorch reference (scripts/reference/m2clip_reference.py,
/// written from the spec) on a tiny random model whose every adapter weight is non-zero,
/// stored as f16 under the authors' release names. Cases cover TED before the MLP and before
/// attention, TE or TD alone, T = 1…8, and TED off (= plain CLIP averaged over frames).
///
/// Tolerance: max abs 1e-4 on embeddings and logits, cosine ≥ 0.99999 (the reference runs in
/// float64 from the same f16 values; we run in fp32).
@Suite struct M2CLIPParityTests {
    struct Case: Decodable {
        let name: String
        let frames: Int
        let weights: String
        let config: ReferenceConfig
        let unusedTensors: [String]
    }

    /// The reference's m2clip-config (see the docstring of m2clip_reference.py).
    struct ReferenceConfig: Decodable {
        struct Tower: Decodable {
            let width: Int, layers: Int, heads: Int
            let patchSize: Int?, imageSize: Int?, vocabSize: Int?, contextLength: Int?
        }
        struct TED: Decodable { let positions: [String]; let layers: [Int]; let width: Int; let te: Bool; let td: Bool }
        struct Post: Decodable { let enabled: Bool; let width: Int }
        struct TextAdapter: Decodable { let layers: [Int]; let width: Int }
        let vision: Tower, text: Tower
        let projectionDim: Int, mlpRatio: Int
        let ted: TED, postAdapter: Post, textAdapter: TextAdapter
        let classes: Int

        func configuration(frames: Int) -> M2CLIPConfiguration {
            let clip = CLIPConfiguration(
                projectionDim: projectionDim,
                // the reference pools text at the highest id (OpenAI): transformers' rule for eos 2
                text: CLIPTextConfiguration(hiddenSize: text.width, intermediateSize: text.width * mlpRatio,
                                            heads: text.heads, layers: text.layers, vocabSize: text.vocabSize!,
                                            maxPositions: text.contextLength!, eosTokenID: 2),
                vision: CLIPVisionConfiguration(hiddenSize: vision.width, intermediateSize: vision.width * mlpRatio,
                                                heads: vision.heads, layers: vision.layers,
                                                imageSize: vision.imageSize!, patchSize: vision.patchSize!))
            return M2CLIPConfiguration(
                clip: clip,
                ted: TEDConfiguration(positions: ted.positions.compactMap(TEDConfiguration.Position.init),
                                      layers: ted.layers, width: ted.width, temporalEnhancement: ted.te,
                                      temporalDifference: ted.td),
                postAdapter: PostAdapterConfiguration(enabled: postAdapter.enabled, width: postAdapter.width),
                textAdapter: TextAdapterConfiguration(layers: textAdapter.layers, width: textAdapter.width),
                classes: classes, frames: frames, vcHeadTrained: true)
        }
    }

    struct Labels: Decodable {
        let labels: [String]
        let token_ids: [[Int32]]
    }

    static let directory = "m2clip-tiny"

    static var cases: [Case] {
        struct File: Decodable { let cases: [Case] }
        let data = FileManager.default.contents(atPath: fixturePath("\(directory)/cases.json")) ?? Data()
        return (try? JSONDecoder().decode(File.self, from: data))?.cases ?? []
    }

    @Test func fixtureHasCases() {
        #expect(Self.cases.count >= 6, "Tests/Fixtures/\(Self.directory)/cases.json")
    }

    @Test(arguments: cases.map(\.name))
    func matchesReference(caseName: String) throws {
        let testCase = try #require(Self.cases.first { $0.name == caseName })
        let context = try ComputeContext(threads: 2)
        let file = try SafeTensorsFile(path: fixturePath("\(Self.directory)/\(testCase.weights)"))
        let unused = Set(testCase.unusedTensors)
        let weights = try Conversion.copy(file, keeping: { !unused.contains($0) })
        let configuration = testCase.config.configuration(frames: testCase.frames)
        let tokenizer = try TokenizerFileContents.read(directory: BundledResources.tokenizerDirectory!.path)
        let model = try M2CLIPModel(configuration: configuration, reader: WeightReader(source: weights),
                                    tokenizerFiles: tokenizer, labels: [], labelEmbeddings: [], context: context)

        let reference = try SafeTensorsFile(path: fixturePath("\(Self.directory)/reference.safetensors"))
        func expected(_ field: String) throws -> [Float] { try reference.floats("case.\(caseName).\(field)") }
        let labels = try JSONDecoder().decode(Labels.self, from: FileManager.default.contents(
            atPath: fixturePath("\(Self.directory)/labels.json"))!)
        let textEmbeddings = try labels.token_ids.map { try model.text(ids: $0, context: context) }
        expectClose(textEmbeddings.flatMap { $0 }, try expected("label_text_embeds"), absTol: 1e-4,
                    "\(caseName) label_text_embeds")
        model.setLabels(labels.labels, embeddings: textEmbeddings)

        let pixels = try expected("pixel_values")
        let input = Tensor(shape: [testCase.frames, 3, 32, 32], values: pixels)
        let output = model(pixels: input.data, clips: 1, frames: testCase.frames, context: context)[0]
        expectClose(output.frameEmbeddings.flatMap { $0 }, try expected("frame_embeds"), absTol: 1e-4,
                    "\(caseName) frame_embeds")
        expectClose(output.videoEmbedding, try expected("video_embed"), absTol: 1e-4, "\(caseName) video_embed")
        expectClose(try #require(output.vcLogits), try expected("vc_logits"), absTol: 1e-4, "\(caseName) vc_logits")
        expectClose(output.labelScores, try expected("label_scores"), absTol: 1e-5, "\(caseName) label_scores")
    }
}
