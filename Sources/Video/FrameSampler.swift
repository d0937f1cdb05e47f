/// The display indices of one clip, and how many of them repeat an earlier one (a clip
/// shorter than the sampling span repeats frames to still give T of them).
public struct FrameSample: Sendable, Equatable {
    /// T indices in temporal order.
    public var indices: [Int]
    /// T − the number of distinct indices.
    public var repeated: Int

    public init(indices: [Int]) {
        self.indices = indices
        repeated = indices.count - Set(indices).count
    }
}

/// How a clip of T frames is taken from a video (M²-CLIP, spec §6).
public enum SamplingStrategy: Sendable, Equatable {
    /// T equal segments over the whole video, one frame from each (TSN; SSv2).
    case segments
    /// T frames `stride` apart (K400).
    case dense(stride: Int)
}

/// Clip sampling: index arithmetic only, no decoding. Every function needs frameCount ≥ 1
/// and frames ≥ 1; indices always lie in 0..<frameCount.
public enum FrameSampler {
    /// Test-time segment sampling: the middle frame of each of `frames` equal segments
    /// (index ⌊(i + ½) · frameCount / T⌋). Fewer than T frames repeat.
    public static func segments(frameCount: Int, frames: Int) -> FrameSample {
        segmentSample(frameCount: frameCount, frames: frames, phase: 0.5)
    }

    /// Training-time segment sampling: one uniformly random frame from each segment
    /// [⌊i · frameCount / T⌋, ⌊(i + 1) · frameCount / T⌋); an empty segment (fewer frames than
    /// T) takes its first frame.
    public static func segments<R: RandomNumberGenerator>(frameCount: Int, frames: Int,
                                                          using generator: inout R) -> FrameSample {
        check(frameCount, frames)
        let indices = (0..<frames).map { i -> Int in
            let low = i * frameCount / frames, high = (i + 1) * frameCount / frames
            return high > low ? Int.random(in: low..<high, using: &generator) : min(low, frameCount - 1)
        }
        return FrameSample(indices: indices)
    }

    /// Dense sampling: `frames` indices `stride` apart from `start` (nil: centred, i.e.
    /// ⌊(frameCount − span) / 2⌋ with span = (T − 1) · stride + 1, or 0 when the video is
    /// shorter). Indices past the end repeat the last frame.
    public static func dense(frameCount: Int, frames: Int, stride: Int, start: Int? = nil) -> FrameSample {
        check(frameCount, frames)
        precondition(stride >= 1, "frame sampling: stride \(stride) must be at least 1")
        let span = (frames - 1) * stride + 1
        let first = min(max(start ?? (frameCount - span) / 2, 0), frameCount - 1)
        return FrameSample(indices: (0..<frames).map { min(first + $0 * stride, frameCount - 1) })
    }

    /// Training-time dense sampling: a uniformly random start in 0...(frameCount − span).
    public static func dense<R: RandomNumberGenerator>(frameCount: Int, frames: Int, stride: Int,
                                                       using generator: inout R) -> FrameSample {
        check(frameCount, frames)
        let span = (frames - 1) * max(stride, 1) + 1
        let start = Int.random(in: 0...max(frameCount - span, 0), using: &generator)
        return dense(frameCount: frameCount, frames: frames, stride: stride, start: start)
    }

    /// `clips` test views spread evenly over the video (the M²-CLIP test protocol takes 3).
    /// Dense: the valid starts 0...(frameCount − span) are cut into `clips` equal parts and each
    /// view starts in the middle of its part (mmaction2's SampleFrames in test mode); a video
    /// shorter than the span gives `clips` identical views from frame 0. Segments: view j takes
    /// the frame at fraction (j + ½) / clips of each segment, so one view is the middle frame.
    public static func views(_ strategy: SamplingStrategy, frameCount: Int, frames: Int,
                             clips: Int) -> [FrameSample] {
        check(frameCount, frames)
        precondition(clips >= 1, "frame sampling: \(clips) clips, need at least 1")
        switch strategy {
        case .segments:
            return (0..<clips).map {
                segmentSample(frameCount: frameCount, frames: frames, phase: (Double($0) + 0.5) / Double(clips))
            }
        case .dense(let stride):
            precondition(stride >= 1, "frame sampling: stride \(stride) must be at least 1")
            let span = (frames - 1) * stride + 1
            let interval = Double(frameCount - span + 1) / Double(clips)
            return (0..<clips).map { j in
                let start = frameCount >= span ? Int(interval * Double(j) + interval / 2) : 0
                return dense(frameCount: frameCount, frames: frames, stride: stride, start: start)
            }
        }
    }

    private static func segmentSample(frameCount: Int, frames: Int, phase: Double) -> FrameSample {
        check(frameCount, frames)
        let interval = Double(frameCount) / Double(frames)
        return FrameSample(indices: (0..<frames).map {
            min(Int(interval * (Double($0) + phase)), frameCount - 1)
        })
    }

    private static func check(_ frameCount: Int, _ frames: Int) {
        precondition(frameCount >= 1, "frame sampling: a video of \(frameCount) frames")
        precondition(frames >= 1, "frame sampling: clips of \(frames) frames")
    }
}
