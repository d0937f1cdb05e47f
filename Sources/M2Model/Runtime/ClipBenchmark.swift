import Foundation
import Ops

/// Latency of the image tower on one clip of `frames` frames, repeated: what `m2clip bench`
/// reports. Inputs are random normal pixels (latency does not depend on their values).
public struct ClipBenchmark: Sendable {
    public struct Result: Codable, Sendable {
        public var model: String
        public var kernels: String
        public var threads: Int
        public var frames: Int
        public var iterations: Int
        public var clipMsMedian: Double
        public var clipMsP90: Double
        public var clipMsMin: Double
        public var clipMsMax: Double
        public var frameMsMedian: Double
        /// Mean milliseconds per clip spent in each stage, in execution order.
        public var stages: [Stage]
        public var gflopPerClip: Double
        public var gflopsMedian: Double
        public var peakRSSMB: Double
        /// Decoding and pre-processing one clip of a video file, when one was given.
        public var decodeMsMedian: Double?
        public var decodeMsP90: Double?
        /// The machine's measured peaks, when asked for.
        public var peak: MachinePeak?

        public struct Stage: Codable, Sendable {
            public var name: String
            public var ms: Double
        }

        enum CodingKeys: String, CodingKey {
            case model, kernels, threads, frames, iterations, stages
            case clipMsMedian = "clip_ms_median", clipMsP90 = "clip_ms_p90"
            case clipMsMin = "clip_ms_min", clipMsMax = "clip_ms_max"
            case frameMsMedian = "frame_ms_median", gflopPerClip = "gflop_per_clip"
            case gflopsMedian = "gflops_median", peakRSSMB = "peak_rss_mb"
            case decodeMsMedian = "decode_ms_median", decodeMsP90 = "decode_ms_p90", peak
        }
    }

    public var frames: Int
    public var iterations: Int
    public var warmup: Int

    public init(frames: Int, iterations: Int, warmup: Int = 1) {
        self.frames = frames
        self.iterations = iterations
        self.warmup = warmup
    }

    /// The CLIP image tower alone (per-frame embeddings).
    public func run(tower: VisionTower, modelName: String, context: ComputeContext) -> Result {
        let c = tower.configuration
        let gflop = Self.visionFLOPs(c, projectionDim: tower.projectionDim) * Double(frames) / 1e9
        return measure(vision: c, modelName: modelName, gflopPerClip: gflop, context: context) { pixels, times in
            _ = tower(pixels: pixels, frames: frames, context: context, times: times)
        }
    }

    /// The whole M²-CLIP video path: image tower with adapters, temporal adapter, VC head and
    /// zero-shot scores over the model's labels.
    public func run(model: M2CLIPModel, modelName: String, context: ComputeContext) -> Result {
        let c = model.vision.configuration
        let gflop = Self.visionFLOPs(c, projectionDim: model.configuration.clip.projectionDim) * Double(frames) / 1e9
        return measure(vision: c, modelName: modelName, gflopPerClip: gflop, context: context) { pixels, times in
            _ = model(pixels: pixels, clips: 1, frames: frames, context: context, times: times)
        }
    }

    func measure(vision c: CLIPVisionConfiguration, modelName: String, gflopPerClip gflop: Double,
                 context: ComputeContext, clip: (UnsafePointer<Float>, StageTimes?) -> Void) -> Result {
        let pixels = Tensor(shape: [frames, c.channels, c.imageSize, c.imageSize])
        var rng = SplitMix64(seed: 0x5eed)
        for i in 0..<pixels.count { pixels.data[i] = rng.nextNormal() }
        for _ in 0..<warmup { clip(pixels.data, nil) }
        let times = StageTimes()
        var clipMs: [Double] = []
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            clip(pixels.data, times)
            clipMs.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        let sorted = clipMs.sorted()
        let median = Self.percentile(sorted, 0.5)
        return Result(
            model: modelName, kernels: context.kernelName, threads: context.threads,
            frames: frames, iterations: iterations,
            clipMsMedian: median, clipMsP90: Self.percentile(sorted, 0.9),
            clipMsMin: sorted.first ?? 0, clipMsMax: sorted.last ?? 0,
            frameMsMedian: median / Double(frames),
            stages: times.order.map {
                .init(name: $0, ms: Double(times.nanoseconds[$0]!) / 1e6 / Double(max(iterations, 1)))
            },
            gflopPerClip: gflop, gflopsMedian: median > 0 ? gflop / (median / 1e3) : 0,
            peakRSSMB: ProcessStats.peakRSSBytes().map { Double($0) / 1_048_576 } ?? 0)
    }

    /// Linear interpolation between closest ranks of sorted values.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let position = q * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down)), upper = min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }

    /// Multiply-adds × 2 of one frame through the image tower (GEMMs and attention).
    public static func visionFLOPs(_ c: CLIPVisionConfiguration, projectionDim: Int) -> Double {
        let t = Double(c.tokens), d = Double(c.encoder.hiddenSize)
        let inner = Double(c.encoder.intermediateSize)
        let patch = Double(c.patches) * d * Double(c.channels * c.patchSize * c.patchSize)
        let perLayer = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * inner
        return 2 * (patch + Double(c.encoder.layers) * perLayer + d * Double(projectionDim))
    }
}

/// Process resource figures from /proc.
public enum ProcessStats {
    /// VmHWM: the peak resident set size.
    public static func peakRSSBytes() -> Int? { statusBytes("VmHWM:") }

    /// VmRSS: the resident set size now.
    public static func rssBytes() -> Int? { statusBytes("VmRSS:") }

    private static func statusBytes(_ field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field) {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first
            return kb.map { $0 * 1024 }
        }
        return nil
    }
}
