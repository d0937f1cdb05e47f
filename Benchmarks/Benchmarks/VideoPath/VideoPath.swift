import Benchmark
import Foundation
import M2Model
import Ops
import Video

// The video path of one 8-frame clip, fp32, every thread of the machine:
// - decode + preprocess: open a phone recording (H.264, 320x240, rotated), sample 8 frames
//   by segments, decode, resize (bicubic), crop and normalise;
// - M²-CLIP model: image tower with TED-Adapters before every MLP, temporal adapter, VC head
//   and zero-shot scores over 400 labels, on an untrained B/16 converted from random CLIP
//   weights (same cost as a trained one);
// - clip encoding: one 640x480 RGB camera frame to H.264 (RGB → yuv420p, libx264 ultrafast,
//   zerolatency, one thread), what m2clipd spends per clip frame of a camera that is not H.264.

let fixtureVideo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Tests/Fixtures/video/phone_h264_rot90.mp4").path

let benchmarks: @Sendable () -> Void = {
    Benchmark("decode + preprocess, 8-frame clip (phone MP4)",
              configuration: .init(metrics: [.wallClock], warmupIterations: 2, maxDuration: .seconds(5),
                                   maxIterations: 100)) { benchmark in
        let preprocessor = CLIPPreprocessor()
        for _ in benchmark.scaledIterations {
            let video = try! VideoFile(path: fixtureVideo)
            let sample = FrameSampler.segments(frameCount: video.frameCount, frames: 8)
            let frames = try! video.frames(at: sample.indices)
            blackHole(preprocessor.tensor(frames))
        }
    }

    Benchmark("clip encoding, one 640x480 frame to H.264",
              configuration: .init(metrics: [.wallClock], warmupIterations: 5, maxDuration: .seconds(5),
                                   maxIterations: 1000)) { benchmark in
        // A moving gradient with noise, so every frame has new detail to code.
        var rng = SplitMix64(seed: 3)
        let frames = (0..<16).map { k in
            RGBFrame(width: 640, height: 480, rgb: (0..<(640 * 480 * 3)).map { i in
                UInt8(truncatingIfNeeded: (i / 3 % 640 + k * 8) + (i / 1920) / 2 + Int(rng.next() % 24))
            }, index: k, timestamp: 0, sourceIndex: k, clamped: false)
        }
        let encoder = try! VideoEncoder(width: 640, height: 480, fps: 15)
        var milliseconds: Int64 = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            milliseconds += 67
            blackHole(try! encoder.encode(frames[i % frames.count], milliseconds: milliseconds))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("M²-CLIP B/16 model, 8-frame clip, fp32",
              configuration: .init(metrics: [.wallClock, .peakMemoryResident], warmupIterations: 1,
                                   maxDuration: .seconds(20), maxIterations: 10)) { benchmark in
        let (model, pixels, context) = (modelFixture.model, modelFixture.pixels, modelFixture.context)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(model(pixels: pixels.data, clips: 1, frames: 8, context: context))
        }
        benchmark.stopMeasurement()
    }
}

/// Built once, on first use: a random B/16 CLIP converted to an M²-CLIP model file.
final class ModelFixture: @unchecked Sendable {
    let context: ComputeContext
    let model: M2CLIPModel
    let pixels: Tensor

    init() {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-bench-vitb16").path
        if !FileManager.default.fileExists(atPath: directory + "/model.safetensors") {
            try! RandomCheckpoint.write(configuration: RandomCheckpoint.Preset.vitB16.configuration,
                                        to: directory, seed: 0)
        }
        context = try! ComputeContext()
        let file = directory + "/k400.m2c"
        if !FileManager.default.fileExists(atPath: file) {
            let labels = (0..<400).map { "action \($0)" }
            try! Conversion.convert(.huggingFace(directory: directory), options: .init(labels: labels),
                                    output: file, context: context)
        }
        model = try! ModelFile.load(path: file, context: context)
        pixels = Tensor(shape: [8, 3, 224, 224])
        var rng = SplitMix64(seed: 7)
        for i in 0..<pixels.count { pixels.data[i] = rng.nextNormal() }
    }
}

let modelFixture = ModelFixture()
