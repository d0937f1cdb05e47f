import Foundation
import M2Model
import Video

/// Time to turn a video file into one model-ready clip: open, sample T frames (segments),
/// decode, resize, crop and normalise. What `m2clip bench --video` reports.
public enum DecodeBenchmark {
    /// Milliseconds per clip, one entry per iteration (after one warm-up).
    public static func run(path: String, frames: Int, imageSize: Int, iterations: Int) throws -> [Double] {
        let preprocessor = CLIPPreprocessor(size: imageSize)
        func clip() throws {
            let video = try VideoFile(path: path)
            let sample = FrameSampler.segments(frameCount: video.frameCount, frames: frames)
            let decoded = try video.frames(at: Array(Set(sample.indices)).sorted())
            var byIndex: [Int: RGBFrame] = [:]
            for frame in decoded { byIndex[frame.index] = frame }
            _ = preprocessor.tensor(sample.indices.map { byIndex[$0]! })
        }
        try clip()
        return try (0..<iterations).map { _ in
            let start = DispatchTime.now().uptimeNanoseconds
            try clip()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        }
    }
}
