import ArgumentParser
import Foundation
import M2Model
import Ops
import Pipeline

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Per-clip and per-stage latency on random frames: the CLIP image tower, or the whole M²-CLIP video path of a model file.")

    @Option(help: "A Hugging Face CLIP checkpoint directory, or an M²-CLIP model file (.m2c).")
    var model: String

    @Option(help: "Also time decoding and pre-processing one clip of this video file.")
    var video: String?

    @Option(help: "Frames per clip.")
    var frames = 8

    @Option(help: "Timed clips (after one warm-up clip).")
    var iterations = 10

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Also measure this machine's fp32 FMA and int8 VNNI peaks (per core and on all threads).")
    var peak = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard frames >= 1 else { throw ValidationError("--frames must be at least 1, got \(frames)") }
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1, got \(iterations)") }
    }

    func run() throws {
        let context = try engine.makeContext()
        let benchmark = ClipBenchmark(frames: frames, iterations: iterations)
        var result: ClipBenchmark.Result
        let imageSize: Int
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), !isDirectory.boolValue {
            let m2clip = try ModelFile.load(path: model, context: context)
            result = benchmark.run(model: m2clip, modelName: model, context: context)
            imageSize = m2clip.vision.configuration.imageSize
        } else {
            let clip = try CLIPModel(directory: model, towers: .vision, context: context)
            result = benchmark.run(tower: clip.vision!, modelName: model, context: context)
            imageSize = clip.vision!.configuration.imageSize
        }
        if let video {
            let decode = try DecodeBenchmark.run(path: video, frames: frames, imageSize: imageSize,
                                                 iterations: iterations).sorted()
            result.decodeMsMedian = ClipBenchmark.percentile(decode, 0.5)
            result.decodeMsP90 = ClipBenchmark.percentile(decode, 0.9)
        }
        let machine = peak ? MachinePeak.measure(context: context) : nil
        result.peak = machine
        if json {
            try printJSON(result)
            return
        }
        if let machine {
            print(String(format: "machine peak: fp32 %.0f GFLOP/s per core, %.0f on %d threads; int8 VNNI %.0f GOPS per core, %.0f on %d threads",
                         machine.fp32GflopsPerCore, machine.fp32GflopsAllThreads, context.threads,
                         machine.int8GopsPerCore, machine.int8GopsAllThreads, context.threads))
        }
        print("model \(result.model): \(result.frames) frames/clip, \(result.threads) threads, kernels \(result.kernels)")
        print(String(format: "clip: median %.1f ms, p90 %.1f ms, min %.1f, max %.1f (%d clips)",
                     result.clipMsMedian, result.clipMsP90, result.clipMsMin, result.clipMsMax, result.iterations))
        print(String(format: "      %.1f GFLOP/clip, %.1f GFLOP/s at the median; peak RSS %.0f MB",
                     result.gflopPerClip, result.gflopsMedian, result.peakRSSMB))
        if let decode = result.decodeMsMedian {
            print(String(format: "decode + preprocess: median %.1f ms, p90 %.1f ms per clip", decode, result.decodeMsP90 ?? 0))
        }
        print("stage          ms/clip   share")
        let total = result.stages.reduce(0) { $0 + $1.ms }
        for stage in result.stages {
            let name = stage.name.padding(toLength: 12, withPad: " ", startingAt: 0)
            print(name + String(format: " %9.1f  %5.1f%%", stage.ms, 100 * stage.ms / max(total, 1e-9)))
        }
    }
}
