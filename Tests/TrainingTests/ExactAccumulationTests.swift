import Foundation
import Testing
import Ops
@testable import M2Model
@testable import Training

/// K micro-batches give the gradient of one batch of all their clips (the contrastive loss over
/// the whole batch's pairs, the other terms weighted by clips and masked tokens), on the tiny
/// fixture's cases. Tolerance: fp32 sums in another order, max |error| ≤ 1e-5 × max |g|.
@Suite struct ExactAccumulationTests {
    @Test(arguments: ["k400", "ssv2", "te_only"])
    func microBatchesEqualTheWholeBatch(caseName: String) throws {
        let fixture = try #require(AutogradParityTests.fixture)
        let testCase = try #require(fixture.cases.first { $0.name == caseName })
        let context = try ComputeContext(threads: 2)
        let trainer = try AutogradParityTests.trainer(for: testCase, fixture: fixture, context: context)
        let batch = try TrainingBatch.read(path: AutogradParityTests.directory + "/" + testCase.batch, for: trainer)
        #expect(batch.clips == 3)
        let whole = trainer.computeGradients(batch, context: context)
        let reference = Dictionary(uniqueKeysWithValues: trainer.gradients.names.map { ($0, trainer.gradients.values($0)!.values) })
        // unequal micro-batches: 2 clips, then 1
        let parts = trainer.accumulateGradients([batch.slice(0..<2), batch.slice(2..<3)], context: context)
        for (name, want, got) in [("contrastive_v2t", whole.contrastiveV2T, parts.contrastiveV2T),
                                  ("contrastive_t2v", whole.contrastiveT2V, parts.contrastiveT2V),
                                  ("cmc", whole.cmc, parts.cmc), ("vc", whole.vc, parts.vc), ("mlm", whole.mlm, parts.mlm),
                                  ("total", whole.total, parts.total)] {
            #expect(abs(want - got) <= 1e-5 * max(1, abs(want)), "\(caseName) \(name): whole \(want), micro-batches \(got)")
        }
        var checked = 0
        for name in trainer.gradients.names {
            let want = reference[name]!, got = trainer.gradients.values(name)!.values
            let scale = want.map(abs).max() ?? 0
            let worst = zip(want, got).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-5 * scale + 1e-9, "\(caseName) \(name): max |error| \(worst), max |g| \(scale)")
            if scale > 0 { checked += 1 }
        }
        #expect(checked > 10, "non-zero gradients compared")
        // and plain averaging of micro-batch gradients would not be exact: the contrastive pairs span the batch
        let first = trainer.computeGradients(batch.slice(0..<2), context: context)
        #expect(abs(first.contrastiveV2T - whole.contrastiveV2T) > 1e-4)
    }
}
