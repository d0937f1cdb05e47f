import Foundation
import M2Model
import Ops
import Video

/// Classifies video files with an M²-CLIP model: sample T frames per temporal view, resize
/// and crop as CLIP (1 or 3 spatial crops), run every view of a file as one batch, softmax
/// per view, mean over views (the M²-CLIP test protocol, spec §6).
public final class VideoClassifier: @unchecked Sendable {
    public enum Head: String, Codable, Sendable {
        case vc
        case zeroShot = "zero-shot"
    }

    public struct Options: Sendable {
        public var frames: Int
        public var temporalViews: Int
        public var spatialCrops: Int
        public var sampling: SamplingStrategy
        /// nil: the VC head when it is trained and matches the labels, else zero-shot.
        public var head: Head?
        public var top: Int

        public init(frames: Int, temporalViews: Int = 1, spatialCrops: Int = 1,
                    sampling: SamplingStrategy = .segments, head: Head? = nil, top: Int = 5) {
            self.frames = frames
            self.temporalViews = temporalViews
            self.spatialCrops = spatialCrops
            self.sampling = sampling
            self.head = head
            self.top = top
        }
    }

    public struct Result: Encodable, Sendable {
        public struct Score: Encodable, Sendable {
            public var label: String
            public var score: Float
        }

        public var file: String
        public var top: [Score]
        public var head: Head
        /// Distinct frames decoded for the views.
        public var framesUsed: Int
        /// Positions of the T-frame clips filled by repeating a frame (clip shorter than T).
        public var repeatedFrames: Int
        public var views: Int
        public var decodeMs: Double
        public var modelMs: Double
        public var notes: [String]

        enum CodingKeys: String, CodingKey {
            case file, top, head, views, notes
            case framesUsed = "frames_used", repeatedFrames = "repeated_frames"
            case decodeMs = "decode_ms", modelMs = "model_ms"
        }
    }

    public let model: M2CLIPModel
    public let options: Options
    let preprocessor: CLIPPreprocessor

    public init(model: M2CLIPModel, options: Options) throws {
        self.model = model
        self.options = options
        preprocessor = CLIPPreprocessor(size: model.vision.configuration.imageSize)
        if options.head == .vc {
            guard model.configuration.classes > 0 else {
                throw ClassifierError("the model has no VC head; use zero-shot")
            }
            guard model.configuration.classes == model.labels.count else {
                throw ClassifierError("the VC head has \(model.configuration.classes) classes but the model's label set has \(model.labels.count) labels (changed with `labels set`?); use zero-shot")
            }
        }
    }

    /// The head used when the options leave it open.
    public var head: Head {
        if let head = options.head { return head }
        let c = model.configuration
        return c.classes > 0 && c.vcHeadTrained && c.classes == model.labels.count ? .vc : .zeroShot
    }

    public func classify(path: String, context: ComputeContext) throws -> Result {
        let start = DispatchTime.now().uptimeNanoseconds
        let video = try VideoFile(path: path)
        guard video.frameCount >= 1 else { throw VideoError(path: path, kind: .corrupt, detail: "no frames") }
        let samples = FrameSampler.views(options.sampling, frameCount: video.frameCount,
                                         frames: options.frames, clips: options.temporalViews)
        let wanted = Array(Set(samples.flatMap(\.indices))).sorted()
        let decoded = try video.frames(at: wanted)
        var byIndex: [Int: RGBFrame] = [:]
        for frame in decoded { byIndex[frame.index] = frame }
        let crops: [CLIPPreprocessor.Crop] = options.spatialCrops == 3 ? CLIPPreprocessor.Crop.allCases : [.center]
        var clips: [Tensor] = []
        for sample in samples {
            let frames = sample.indices.map { byIndex[$0]! }
            clips += preprocessor.views(frames, crops: crops)
        }
        let distinct = Set(decoded.map(\.sourceIndex)).count
        var repeated = samples.map(\.repeated).reduce(0, +)
        // Frames the file ended before (the header's count was too high) repeat its last one.
        repeated += samples.flatMap(\.indices).filter { byIndex[$0]!.clamped }.count
        let decodeEnd = DispatchTime.now().uptimeNanoseconds

        let t = options.frames, plane = clips[0].count
        let batch = Tensor(shape: [clips.count * t] + Array(clips[0].shape.dropFirst()))
        for (i, clip) in clips.enumerated() { (batch.data + i * plane).update(from: clip.data, count: plane) }
        let outputs = model(pixels: batch.data, clips: clips.count, frames: t, context: context)
        let head = self.head
        let perView = outputs.map { $0.vcLogits.map(M2Model.softmax) ?? [] }
        let scores = head == .vc ? perView : outputs.map(\.labelScores)
        var mean = [Float](repeating: 0, count: scores[0].count)
        for view in scores { for (i, s) in view.enumerated() { mean[i] += s / Float(scores.count) } }
        let top = mean.enumerated().sorted { $0.element > $1.element }.prefix(options.top).map {
            Result.Score(label: model.labels[$0.offset], score: $0.element)
        }
        let end = DispatchTime.now().uptimeNanoseconds
        var notes: [String] = []
        if repeated > 0 {
            notes.append("video has fewer frames than the clips need: \(repeated) of \(samples.count * t) frame positions repeat a frame")
        }
        if head == .zeroShot && options.head == nil && model.configuration.classes > 0 && !model.configuration.vcHeadTrained {
            notes.append("zero-shot: the model's VC head is untrained")
        }
        if video.rejectedPackets > 0 {
            notes.append("\(video.rejectedPackets) damaged packets skipped")
        }
        return Result(file: path, top: Array(top), head: head, framesUsed: distinct, repeatedFrames: repeated,
                      views: clips.count, decodeMs: Double(decodeEnd - start) / 1e6,
                      modelMs: Double(end - decodeEnd) / 1e6, notes: notes)
    }
}

public struct ClassifierError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
