import Benchmark
import Foundation
import M2Model
import Ops

// Image-tower latency per 8-frame clip of an untrained ViT-B/16 (random weights have the
// same cost as real ones), fp32, every thread of the machine. The checkpoint is written
// once to a temporary folder by the same code as `m2clip random-checkpoint`.

let benchmarks: @Sendable () -> Void = {
    Benchmark("ViT-B/16 image tower, 8-frame clip, fp32",
              configuration: .init(metrics: [.wallClock, .peakMemoryResident], warmupIterations: 1,
                                   maxDuration: .seconds(20), maxIterations: 10)) { benchmark in
        let (tower, pixels, context) = (fixture.tower, fixture.pixels, fixture.context)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(tower(pixels: pixels.data, frames: 8, context: context))
        }
        benchmark.stopMeasurement()
    }
}

/// Loaded once, on first use (a global is initialised lazily).
final class Fixture: @unchecked Sendable {
    let context: ComputeContext
    let tower: VisionTower
    let pixels: Tensor

    init() {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("m2clip-bench-vitb16").path
        if !FileManager.default.fileExists(atPath: directory + "/model.safetensors") {
            try! RandomCheckpoint.write(configuration: RandomCheckpoint.Preset.vitB16.configuration,
                                        to: directory, seed: 0)
        }
        context = try! ComputeContext()
        tower = try! CLIPModel(directory: directory, towers: .vision, context: context).vision!
        let c = tower.configuration
        pixels = Tensor(shape: [8, c.channels, c.imageSize, c.imageSize])
        var rng = SplitMix64(seed: 7)
        for i in 0..<pixels.count { pixels.data[i] = rng.nextNormal() }
    }
}

let fixture = Fixture()
