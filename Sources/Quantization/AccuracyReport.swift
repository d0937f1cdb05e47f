import Foundation
import M2Model
import Ops
import Video

/// How far a quantized model's answers are from the fp32 model's on the same clips.
public struct AccuracyReport: Codable, Sendable {
    public struct Clip: Codable, Sendable {
        public var source: String
        public var videoEmbeddingCosine: Double
        public var vcTop1Agrees: Bool?
        public var zeroShotTop1Agrees: Bool
        /// The fp32 model's lead of its top-1 VC logit over the second, and the largest change
        /// quantization made to any VC logit: a lead below twice the change is a near tie that
        /// quantization noise may flip (untrained heads give such ties everywhere).
        public var vcTop1Margin: Double?
        public var vcLogitMaxChange: Double?

        /// Not a near tie: the fp32 top-1 leads by more than twice the largest logit change.
        public var vcDecisive: Bool? {
            guard let vcTop1Margin, let vcLogitMaxChange else { return nil }
            return vcTop1Margin > 2 * vcLogitMaxChange
        }

        enum CodingKeys: String, CodingKey {
            case source
            case videoEmbeddingCosine = "video_embed_cosine"
            case vcTop1Agrees = "vc_top1_agrees"
            case zeroShotTop1Agrees = "zero_shot_top1_agrees"
            case vcTop1Margin = "vc_top1_margin", vcLogitMaxChange = "vc_logit_max_change"
        }
    }

    /// Mean over clips of the cosine between fp32 and quantized outputs of each block.
    public var layerCosine: [Double]
    public var clips: [Clip]
    public var videoEmbeddingCosineMin: Double
    public var videoEmbeddingCosineMean: Double
    public var vcTop1Agreement: Double?
    /// Agreement over the clips that are not near ties (`Clip.vcDecisive`), and how many.
    public var vcTop1AgreementDecisive: Double?
    public var vcDecisiveClips: Int?
    public var zeroShotTop1Agreement: Double
    public var fp32Bytes: Int
    public var quantizedBytes: Int

    enum CodingKeys: String, CodingKey {
        case layerCosine = "layer_cosine", clips
        case videoEmbeddingCosineMin = "video_embed_cosine_min"
        case videoEmbeddingCosineMean = "video_embed_cosine_mean"
        case vcTop1Agreement = "vc_top1_agreement", zeroShotTop1Agreement = "zero_shot_top1_agreement"
        case vcTop1AgreementDecisive = "vc_top1_agreement_decisive", vcDecisiveClips = "vc_decisive_clips"
        case fp32Bytes = "fp32_bytes", quantizedBytes = "quantized_bytes"
    }

    /// A clip to compare on: (T, 3, S, S) pixels and where they came from.
    public struct Input {
        public var source: String
        public var pixels: Tensor

        public init(source: String, pixels: Tensor) {
            self.source = source
            self.pixels = pixels
        }
    }

    public static func compare(reference: M2CLIPModel, quantized: M2CLIPModel, inputs: [Input],
                               sizes: (Int, Int), context: ComputeContext) -> AccuracyReport {
        var layerSums: [Double] = []
        var clips: [Clip] = []
        for input in inputs {
            let frames = input.pixels.shape[0]
            let traceA = LayerTrace(), traceB = LayerTrace()
            let a = reference(pixels: input.pixels.data, clips: 1, frames: frames, context: context, trace: traceA)[0]
            let b = quantized(pixels: input.pixels.data, clips: 1, frames: frames, context: context, trace: traceB)[0]
            for (i, (ea, eb)) in zip(traceA.entries, traceB.entries).enumerated() {
                var va: [Float] = [], vb: [Float] = []
                for row in ea.validRows {
                    va += ea.values[(row * ea.width)..<((row + 1) * ea.width)]
                    vb += eb.values[(row * eb.width)..<((row + 1) * eb.width)]
                }
                if layerSums.count <= i { layerSums.append(0) }
                layerSums[i] += cosine(va, vb)
            }
            let argmax = { (v: [Float]) in v.indices.max { v[$0] < v[$1] } }
            var clip = Clip(source: input.source, videoEmbeddingCosine: cosine(a.videoEmbedding, b.videoEmbedding),
                            vcTop1Agrees: a.vcLogits.flatMap { la in b.vcLogits.map { argmax(la) == argmax($0) } },
                            zeroShotTop1Agrees: argmax(a.labelScores) == argmax(b.labelScores))
            if let la = a.vcLogits, let lb = b.vcLogits, la.count >= 2 {
                let sorted = la.sorted(by: >)
                clip.vcTop1Margin = Double(sorted[0] - sorted[1])
                clip.vcLogitMaxChange = Double(zip(la, lb).map { abs($0 - $1) }.max() ?? 0)
            }
            clips.append(clip)
        }
        let n = Double(max(clips.count, 1))
        let vc = clips.compactMap(\.vcTop1Agrees)
        let decisive = clips.filter { $0.vcDecisive == true }.compactMap(\.vcTop1Agrees)
        return AccuracyReport(
            layerCosine: layerSums.map { $0 / n }, clips: clips,
            videoEmbeddingCosineMin: clips.map(\.videoEmbeddingCosine).min() ?? 0,
            videoEmbeddingCosineMean: clips.map(\.videoEmbeddingCosine).reduce(0, +) / n,
            vcTop1Agreement: vc.isEmpty ? nil : Double(vc.filter { $0 }.count) / Double(vc.count),
            vcTop1AgreementDecisive: decisive.isEmpty ? nil : Double(decisive.filter { $0 }.count) / Double(decisive.count),
            vcDecisiveClips: vc.isEmpty ? nil : decisive.count,
            zeroShotTop1Agreement: Double(clips.filter(\.zeroShotTop1Agrees).count) / n,
            fp32Bytes: sizes.0, quantizedBytes: sizes.1)
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for i in 0..<min(a.count, b.count) {
            dot += Double(a[i]) * Double(b[i])
            na += Double(a[i]) * Double(a[i])
            nb += Double(b[i]) * Double(b[i])
        }
        return dot / max((na * nb).squareRoot(), 1e-30)
    }

    /// Clips decoded from video files (T frames by segments, centre crop), or, without files,
    /// `count` generated clips: smooth moving colour patterns with noise, which exercise the
    /// model like camera frames do (random pixels would not).
    public static func inputs(videos: [String], frames: Int, imageSize: Int, count: Int) throws -> [Input] {
        if !videos.isEmpty {
            let preprocessor = CLIPPreprocessor(size: imageSize)
            return try videos.map { path in
                let video = try VideoFile(path: path)
                let sample = FrameSampler.segments(frameCount: video.frameCount, frames: frames)
                let decoded = try video.frames(at: Array(Set(sample.indices)).sorted())
                var byIndex: [Int: RGBFrame] = [:]
                for frame in decoded { byIndex[frame.index] = frame }
                return Input(source: path, pixels: preprocessor.tensor(sample.indices.map { byIndex[$0]! }))
            }
        }
        var rng = SplitMix64(seed: 0xca11b)
        return (0..<count).map { clip in
            let pixels = Tensor(shape: [frames, 3, imageSize, imageSize])
            let fx = Float(rng.next() % 7 + 1), fy = Float(rng.next() % 5 + 1), speed = Float(rng.next() % 9) / 4
            let phase = (0..<3).map { _ in Float(rng.next() % 628) / 100 }
            for t in 0..<frames {
                for c in 0..<3 {
                    let plane = pixels.data + (t * 3 + c) * imageSize * imageSize
                    for y in 0..<imageSize {
                        for x in 0..<imageSize {
                            let u = Float(x) / Float(imageSize), v = Float(y) / Float(imageSize)
                            let value = sin(fx * 6.28 * u + speed * Float(t) + phase[c]) * cos(fy * 6.28 * v + phase[c])
                            plane[y * imageSize + x] = 1.2 * value + 0.3 * rng.nextNormal()
                        }
                    }
                }
            }
            return Input(source: "generated clip \(clip)", pixels: pixels)
        }
    }
}
