import Benchmark
import Foundation
import M2Model
import Ops
import Training

// One training step (forward + backward, every loss term on) of an untrained ViT-B/16
// M²-CLIP model, K400 layout, 400 classes, B = 4 clips of T = 8 frames, fp32, every thread of
// the machine: the figure scripts/reference/compare_train_grad.py --torch-step-only sets
// against PyTorch's CPU autograd. The model file is written once to a temporary folder by the
// same code as `m2clip random-checkpoint` + `m2clip convert`.

let benchmarks: @Sendable () -> Void = {
    Benchmark("M²-CLIP training step, ViT-B/16, B=4, T=8, 400 classes, fp32",
              configuration: .init(metrics: [.wallClock, .peakMemoryResident], warmupIterations: 1,
                                   maxDuration: .seconds(120), maxIterations: 5)) { benchmark in
        let (trainer, batch, context) = (fixture.trainer, fixture.batch, fixture.context)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(trainer.computeGradients(batch, context: context))
        }
        benchmark.stopMeasurement()
    }
}

/// Loaded once, on first use (a global is initialised lazily).
final class Fixture: @unchecked Sendable {
    let context: ComputeContext
    let trainer: TrainingModel
    let batch: TrainingBatch

    init() {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-bench-train-k400.m2c").path
        context = try! ComputeContext()
        if !FileManager.default.fileExists(atPath: path) {
            let labels = (0..<400).map { "action number \($0)" }
            try! RandomCheckpoint.writeModelFile(preset: .vitB16, seed: 0, labels: labels, frames: 8, to: path,
                                                 context: context)
        }
        trainer = try! TrainingModel(modelFile: path, context: context)
        batch = TrainingBatch.synthetic(for: trainer, labels: [3, 141, 3, 399], frames: 8, seed: 7)
    }
}

let fixture = Fixture()
