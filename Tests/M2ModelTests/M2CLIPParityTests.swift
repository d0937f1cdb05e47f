import Foundation
import Testing
import SafeTensors
import ReferenceConfigs
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
        let configuration = try testCase.config.configuration(frames: testCase.frames)
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
