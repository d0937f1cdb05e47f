import Foundation
import Testing
import Ops
import SafeTensors
@testable import M2Model
@testable import Training

/// AdamW against `torch.optim.AdamW` (scripts/reference/make_optimizer_fixture.py) on the
/// trainable parameters of the tiny fixture's ssv2 case, four steps with changing gradients and
/// learning rates; and the learning-rate schedule.
@Suite struct AdamWTests {
    @Test func matchesTorchAdamW() throws {
        let fixture = try #require(AutogradParityTests.fixture)
        let testCase = try #require(fixture.cases.first { $0.name == "ssv2" })
        let context = try ComputeContext(threads: 1)
        let trainer = try AutogradParityTests.trainer(for: testCase, fixture: fixture, context: context)
        let gradients = try SafeTensorsFile(path: AutogradParityTests.directory + "/gradients.safetensors")
        let reference = try SafeTensorsFile(path: AutogradParityTests.directory + "/adamw.safetensors")
        let coefficients = try #require(reference.metadata["coefficients"]).split(separator: ",").map { Float($0)! }
        let rates = try #require(reference.metadata["learning_rates"]).split(separator: ",").map { Float($0)! }
        let optimizer = AdamW(gradients: trainer.gradients)
        #expect(!optimizer.decayedNames.contains { $0.hasSuffix(".bias") || $0.contains("LayerNorm") })
        #expect(optimizer.decayedNames.contains("visual.t_adapter.conv.weight"))
        let names = trainer.gradients.names
        #expect(Set(names) == Set(reference.names.map { String($0.dropFirst("final/".count)) }))
        for (coefficient, rate) in zip(coefficients, rates) {
            for name in names {
                trainer.gradients.setValues(name, try gradients.floats("ssv2/" + name).map { $0 * coefficient })
            }
            optimizer.update(learningRate: rate)
        }
        #expect(optimizer.step == 4)
        // fp32 both sides, the same operation order: a few ulps.
        for name in names {
            let want = try reference.floats("final/" + name)
            let got = try #require(trainer.gradients.parameter(name))
            let worst = zip(got, want).map { abs($0 - $1) / max(1e-3, abs($1)) }.max() ?? 0
            #expect(worst <= 1e-5, "\(name): relative error \(worst)")
        }
    }

    @Test func restoreRefusesAMissingOrMisshapedParameter() throws {
        let fixture = try #require(AutogradParityTests.fixture)
        let testCase = try #require(fixture.cases.first { $0.name == "k400" })
        let trainer = try AutogradParityTests.trainer(for: testCase, fixture: fixture, context: try ComputeContext(threads: 1))
        let optimizer = AdamW(gradients: trainer.gradients)
        var tensors = Dictionary(uniqueKeysWithValues: optimizer.state.tensors.map { ($0.name, ($0.value, $0.m, $0.v)) })
        let first = optimizer.state.tensors[0].name
        tensors[first] = ([1], [1], [1])
        #expect(throws: TrainingError.self) { try optimizer.restore(step: 3, tensors: tensors, source: "ck.safetensors") }
        tensors[first] = nil
        do {
            try optimizer.restore(step: 3, tensors: tensors, source: "ck.safetensors")
            Issue.record("a missing parameter was accepted")
        } catch let error as TrainingError {
            #expect(error.description == "ck.safetensors: no state for parameter \(first)")
        }
        #expect(optimizer.step == 0, "a refused restore changes nothing")
    }

    @Test func scheduleWarmsUpThenFollowsTheCosine() {
        let s = LearningRateSchedule(peak: 1e-3, warmupSteps: 4, totalSteps: 20)
        #expect(s.rate(at: 0) == 2.5e-4)
        #expect(s.rate(at: 3) == 1e-3)
        #expect(abs(s.rate(at: 4) - 1e-3) < 1e-9)
        #expect(abs(s.rate(at: 12) - 5e-4) < 1e-9, "half way through the cosine")
        #expect(s.rate(at: 19) > 0 && s.rate(at: 19) < 2e-5)
        let rates = (4..<20).map(s.rate(at:))
        #expect(zip(rates, rates.dropFirst()).allSatisfy { $0 >= $1 }, "non-increasing after warm-up")
        #expect(LearningRateSchedule.scaledPeak(base: 1e-3, effectiveBatch: 64) == 2.5e-4)
        #expect(LearningRateSchedule(peak: 1, warmupSteps: 10, totalSteps: 5).warmupSteps == 4)
    }
}
