import Ops
import Video

/// One clip as the model sees it (spec §6), given its decoded video: which frames, and for
/// training the random resize, crop and flip, drawn from a generator so that the clip is a
/// pure function of the generator's seed.
///
/// Training: T frames by `sampling` with a random start (dense) or a random frame per segment;
/// the shorter side resized to a random integer in `shortSideRange` ([224, 258] scaled by
/// imageSize / 224), a random imageSize square cut out of it, mirrored left–right with
/// p = ½ unless flipping is off; the same resize, crop and flip for all T frames.
/// Evaluation: `FrameSampler.views` temporal views × spatial crops of the frames resized to
/// imageSize on the shorter side; one view is exactly `CLIPPreprocessor.tensor(frames, crop:
/// .center)` of the centre sample.
///
/// Output floats are CLIP-normalised, channels first, as `CLIPPreprocessor.tensor` gives.
public struct ClipSampler: Sendable {
    /// The model's image size S: the side of the square crop.
    public let imageSize: Int
    /// Frames per clip, T.
    public let frames: Int
    public let sampling: SamplingStrategy
    public let preprocessor: CLIPPreprocessor

    /// The random choices of one training clip, for tests and for logging what the model saw.
    public struct TrainingDraw: Sendable, Equatable {
        /// T display indices.
        public var indices: [Int]
        /// The shorter side after resizing, in `shortSideRange`.
        public var shortSide: Int
        /// Top-left corner of the crop in the resized image.
        public var cropX: Int, cropY: Int
        public var flipped: Bool
    }

    public init(imageSize: Int, frames: Int, sampling: SamplingStrategy) {
        precondition(imageSize >= 1 && frames >= 1, "clip sampling: image size \(imageSize), \(frames) frames")
        self.imageSize = imageSize
        self.frames = frames
        self.sampling = sampling
        preprocessor = CLIPPreprocessor(size: imageSize)
    }

    /// Training's short-side jitter, [224, 258] scaled by imageSize / 224 and rounded down:
    /// 224...258 for S = 224, 32...36 for S = 32.
    public var shortSideRange: ClosedRange<Int> {
        imageSize...max(imageSize, 258 * imageSize / 224)
    }

    /// Floats in one view: T · 3 · S · S.
    public var viewCount: Int { frames * 3 * imageSize * imageSize }

    /// The T training indices of a video of `frameCount` frames.
    public func trainingSample<R: RandomNumberGenerator>(frameCount: Int, using generator: inout R) -> FrameSample {
        switch sampling {
        case .segments:
            return FrameSampler.segments(frameCount: frameCount, frames: frames, using: &generator)
        case .dense(let stride):
            return FrameSampler.dense(frameCount: frameCount, frames: frames, stride: stride, using: &generator)
        }
    }

    /// (T, 3, S, S) and the choices made: one training clip of `source`. The generator is
    /// drawn in a fixed order: frame sample, short side, crop x, crop y, then the flip (only
    /// when `flip` is on). Throws what decoding throws, or `TrainingError` when the frames do
    /// not share one size.
    public func trainingClip<R: RandomNumberGenerator>(_ source: FrameSource, flip: Bool,
                                                       using generator: inout R) throws -> (pixels: [Float], draw: TrainingDraw) {
        let sample = trainingSample(frameCount: max(source.frameCount, 1), using: &generator)
        let decoded = try source.frames(at: sample.indices)
        let (width, height) = try commonSize(decoded, of: source)
        let shortSide = Int.random(in: shortSideRange, using: &generator)
        let resized = preprocessor.resizedSize(width: width, height: height, shortSide: shortSide)
        let x = Int.random(in: 0...(resized.width - imageSize), using: &generator)
        let y = Int.random(in: 0...(resized.height - imageSize), using: &generator)
        let flipped = flip && Bool.random(using: &generator)
        let tensor = preprocessor.views(decoded, shortSide: shortSide, origins: [(x, y)], flip: flipped)[0]
        return (tensor.array, TrainingDraw(indices: sample.indices, shortSide: shortSide, cropX: x, cropY: y, flipped: flipped))
    }

    /// (V, T, 3, S, S) with V = temporal · spatial, view v = t · spatial + s: the test views
    /// of `source`. Temporal views are `FrameSampler.views`; spatial crops lie along the
    /// longer side of the frame resized to S on its shorter side, evenly from first to last
    /// (`spatialOrigins`). All views' frames are decoded in one pass.
    public func evaluationClip(_ source: FrameSource, views: (temporal: Int, spatial: Int)) throws -> [Float] {
        precondition(views.temporal >= 1 && views.spatial >= 1, "clip sampling: \(views) views")
        let samples = FrameSampler.views(sampling, frameCount: max(source.frameCount, 1), frames: frames,
                                         clips: views.temporal)
        let decoded = try source.frames(at: samples.flatMap(\.indices))
        let (width, height) = try commonSize(decoded, of: source)
        let origins = spatialOrigins(width: width, height: height, count: views.spatial)
        var pixels: [Float] = []
        pixels.reserveCapacity(views.temporal * views.spatial * viewCount)
        for t in 0..<views.temporal {
            let clip = Array(decoded[(t * frames)..<((t + 1) * frames)])
            for tensor in preprocessor.views(clip, shortSide: imageSize, origins: origins) {
                pixels += UnsafeBufferPointer(start: tensor.data, count: tensor.count)
            }
        }
        return pixels
    }

    /// Top-left corners of `count` S × S test crops in a width × height frame resized to S on
    /// its shorter side: one crop is the centre (`CLIPPreprocessor.Crop.center`), more are
    /// spread evenly along the longer side from its start to its end (offset
    /// round(j · (L − S) / (count − 1)), halves to even), so 3 give `Crop.allCases`.
    public func spatialOrigins(width: Int, height: Int, count: Int) -> [(x: Int, y: Int)] {
        let resized = preprocessor.resizedSize(width: width, height: height)
        guard count > 1 else {
            return [preprocessor.cropOrigin(resizedWidth: resized.width, resizedHeight: resized.height, crop: .center)]
        }
        let centre = preprocessor.cropOrigin(resizedWidth: resized.width, resizedHeight: resized.height, crop: .center)
        let alongWidth = resized.width >= resized.height
        let margin = (alongWidth ? resized.width : resized.height) - imageSize
        return (0..<count).map { j in
            let offset = Int((Double(j * margin) / Double(count - 1)).rounded(.toNearestOrEven))
            return alongWidth ? (offset, centre.y) : (centre.x, offset)
        }
    }

    private func commonSize(_ decoded: [RGBFrame], of source: FrameSource) throws -> (Int, Int) {
        guard let first = decoded.first else { throw TrainingError("\(name(source)): no frames decoded") }
        if let odd = decoded.first(where: { $0.width != first.width || $0.height != first.height }) {
            throw TrainingError("\(name(source)): frame \(odd.index) is \(odd.width)x\(odd.height), "
                                + "frame \(first.index) \(first.width)x\(first.height); one size is needed per clip")
        }
        return (first.width, first.height)
    }

    private func name(_ source: FrameSource) -> String {
        (source as? VideoFile).map { "video \($0.path)" } ?? "video"
    }
}
