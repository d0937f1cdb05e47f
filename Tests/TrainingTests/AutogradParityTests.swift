import Foundation
import Testing
import Ops
import SafeTensors
import ReferenceConfigs
@testable import M2Model
@testable import Training

/// Losses and gradients against PyTorch autograd (scripts/reference/make_training_fixture.py runs
/// scripts/reference/m2clip_training_reference.py, written from the spec) on a tiny random
/// model whose every weight is non-zero, stored as f16 under the release's names. Cases: the
/// K400 and SSv2 layouts (TED, text and CMLM adapters at every position), TE alone with no MLM
/// term, the paper's and other loss weights; all four loss terms.
///
/// Tolerance (the reference runs in float64 from the same f16 values, we run in fp32): loss
/// terms within 2e-5 relative (absolute for terms below 1); per tensor cosine ≥ 0.9999 and max
/// |error| ≤ 1e-3 × max |reference gradient| (+ 1e-7 for gradients that are all zero).
@Suite struct AutogradParityTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/m2clip-train-tiny").path

    struct Fixture: Decodable {
        let labels: [String]
        let classTokenIDs: [[Int32]]
        let cases: [Case]
    }

    struct Case: Decodable {
        let name: String
        let frames: Int
        let config: ReferenceConfig
        let unusedTensors: [String]
        let losses: [String: Double]
        let batch: String
    }

    static var fixture: Fixture? {
        guard let data = FileManager.default.contents(atPath: directory + "/cases.json") else { return nil }
        return try? JSONDecoder().decode(Fixture.self, from: data)
    }

    @Test func fixtureHasCases() throws {
        let fixture = try #require(Self.fixture, "\(Self.directory)/cases.json")
        #expect(fixture.cases.map(\.name) == ["k400", "ssv2", "te_only"])
    }

    /// The case's model as the trainer holds it: f16 release tensors widened to fp32.
    static func trainer(for testCase: Case, fixture: Fixture, context: ComputeContext) throws -> TrainingModel {
        let file = try SafeTensorsFile(path: directory + "/weights.safetensors")
        let unused = Set(testCase.unusedTensors)
        let reader = WeightReader(source: try Conversion.copy(file, keeping: { !unused.contains($0) }))
        reader.widensSixteenBit = true
        let tokenizer = try TokenizerFileContents.read(directory: BundledResources.tokenizerDirectory!.path)
        let model = try M2CLIPModel(configuration: try testCase.config.configuration(frames: testCase.frames),
                                    reader: reader, tokenizerFiles: tokenizer, labels: [],
                                    labelEmbeddings: [], context: context)
        model.setLabels(fixture.labels,
                        embeddings: try fixture.classTokenIDs.map { try model.text(ids: $0, context: context) })
        let trainer = try TrainingModel(model: model, reader: reader, context: context)
        trainer.classTokenIDs = fixture.classTokenIDs
        return trainer
    }

    @Test(arguments: fixture?.cases.map(\.name) ?? [])
    func matchesAutograd(caseName: String) throws {
        let fixture = try #require(Self.fixture)
        let testCase = try #require(fixture.cases.first { $0.name == caseName })
        let context = try ComputeContext(threads: 2)
        let trainer = try Self.trainer(for: testCase, fixture: fixture, context: context)
        let batch = try TrainingBatch.read(path: Self.directory + "/" + testCase.batch, for: trainer)
        let terms = trainer.computeGradients(batch, context: context)

        let got: [String: Float] = ["contrastive_v2t": terms.contrastiveV2T, "contrastive_t2v": terms.contrastiveT2V,
                                    "cmc": terms.cmc, "vc": terms.vc, "mlm": terms.mlm, "total": terms.total]
        for (name, value) in got {
            let want = try #require(testCase.losses[name], "\(caseName): reference has no loss \(name)")
            #expect(abs(Double(value) - want) <= 2e-5 * max(1, abs(want)),
                    "\(caseName) loss \(name): \(value), reference \(want)")
        }
        if caseName != "te_only" { #expect(terms.mlm > 0, "\(caseName): the MLM term is on") }

        let reference = try SafeTensorsFile(path: Self.directory + "/gradients.safetensors")
        let prefix = caseName + "/"
        let expectedNames = Set(reference.names.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) })
        #expect(Set(trainer.gradients.names) == expectedNames,
                "\(caseName): gradients for \(Set(trainer.gradients.names).symmetricDifference(expectedNames).sorted())")
        for name in trainer.gradients.names where expectedNames.contains(name) {
            let (shape, values) = trainer.gradients.values(name)!
            let info = try #require(reference.info(prefix + name))
            #expect(shape == info.shape, "\(caseName) \(name): shape \(shape), reference \(info.shape)")
            let expected = try reference.floats(prefix + name)
            let scale = expected.map(abs).max() ?? 0
            guard values.count == expected.count else { continue }
            var dot = 0.0, na = 0.0, ne = 0.0, worst: Float = 0
            for (a, e) in zip(values, expected) {
                dot += Double(a) * Double(e)
                na += Double(a) * Double(a)
                ne += Double(e) * Double(e)
                worst = max(worst, abs(a - e))
            }
            let cosine = scale == 0 ? (na == 0 ? 1 : 0) : dot / max((na * ne).squareRoot(), 1e-300)
            #expect(worst <= 1e-3 * scale + 1e-7 && cosine >= 0.9999,
                    "\(caseName) \(name): max |error| \(worst) vs max |g| \(scale), cosine \(cosine)")
        }
    }

    /// Recomputing fc1's output in the backward changes no bit of any loss or gradient.
    @Test func recomputingTheMLPGivesIdenticalGradients() throws {
        let fixture = try #require(Self.fixture)
        let testCase = try #require(fixture.cases.first { $0.name == "ssv2" })
        let context = try ComputeContext(threads: 2)
        let trainer = try Self.trainer(for: testCase, fixture: fixture, context: context)
        let batch = try TrainingBatch.read(path: Self.directory + "/" + testCase.batch, for: trainer)
        let kept = trainer.computeGradients(batch, context: context)
        let keptGradients = trainer.gradients.names.map { trainer.gradients.values($0)!.1 }
        trainer.recomputesMLP = true
        let recomputed = trainer.computeGradients(batch, context: context)
        #expect(recomputed.total == kept.total && recomputed.mlm == kept.mlm && recomputed.cmc == kept.cmc)
        for (name, values) in zip(trainer.gradients.names, keptGradients) {
            #expect(trainer.gradients.values(name)!.1 == values, "\(name) changed when recomputed")
        }
    }
}
