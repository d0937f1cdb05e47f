import Foundation
import Video

/// Turns a camera's frames into model windows: keeps every (fps / sampleFPS)-th frame,
/// preprocesses each kept frame once into a ring of the last T, and every `stride` kept frames
/// (once T are there) returns a window of the T frames in order.
///
/// Sampling counts source frames, not timestamps: frame n (its `sequence`) is kept when
/// n ≥ next, and next then advances by fps / sampleFPS frames (at least 1), so 30 → 8 fps keeps
/// frames 0, 4 (3.75), 8 (7.5), 12 (11.25), 15, … and a sequence gap (dropped frames) does not
/// shift the schedule. Memory: T preprocessed frames plus the window handed out (with its last
/// display frame).
public struct RollingWindow {
    /// One model input.
    public struct Window: Sendable {
        /// (T, 3, S, S), oldest frame first.
        public var pixels: [Float]
        public var frames: Int
        /// Source sequence numbers of the T frames.
        public var sequences: [Int]
        /// Capture times of the first and last frame.
        public var startWallClock: Double
        public var endWallClock: Double
        public var startMonotonic: Double
        public var endMonotonic: Double
        /// The last frame as captured (display size), for the action snapshot of a window that
        /// scores best; the frame the source delivered, not a copy.
        public var lastFrame: RGBFrame? = nil
    }

    public let frames: Int
    public let stride: Int
    /// Source frames per kept frame (≥ 1).
    public let step: Double
    /// Floats per preprocessed frame (3 · S · S).
    public let frameSize: Int
    private let preprocess: (RGBFrame) -> [Float]

    private var ring: [[Float]]
    private var meta: [(sequence: Int, wall: Double, mono: Double)]
    private var next: Double = 0
    /// Frames kept so far.
    public private(set) var sampled = 0
    /// Frames the schedule chose whose pixels did not decode (lost, like dropped frames).
    public private(set) var undecodable = 0

    /// - Parameters:
    ///   - sourceFPS, sampleFPS: the camera's rate and the rate to keep.
    ///   - frames: T; stride: kept frames between windows.
    ///   - frameSize: floats `preprocess` returns per frame.
    public init(sourceFPS: Double, sampleFPS: Double, frames: Int, stride: Int, frameSize: Int,
                preprocess: @escaping (RGBFrame) -> [Float]) {
        precondition(frames >= 1 && stride >= 1 && sampleFPS > 0 && sourceFPS > 0,
                     "RollingWindow: frames \(frames), stride \(stride), \(sampleFPS) of \(sourceFPS) fps")
        self.frames = frames
        self.stride = stride
        step = max(sourceFPS / sampleFPS, 1)
        self.frameSize = frameSize
        self.preprocess = preprocess
        ring = Array(repeating: [], count: frames)
        meta = Array(repeating: (0, 0, 0), count: frames)
    }

    /// CLIP preprocessing (resize, centre crop, normalise) at `preprocessor.size`.
    public init(sourceFPS: Double, sampleFPS: Double, frames: Int, stride: Int, preprocessor: CLIPPreprocessor) {
        let size = preprocessor.size
        self.init(sourceFPS: sourceFPS, sampleFPS: sampleFPS, frames: frames, stride: stride,
                  frameSize: 3 * size * size) { frame in
            let tensor = preprocessor.tensor([frame], crop: .center) // (1, 3, S, S)
            return Array(UnsafeBufferPointer(start: tensor.data, count: 3 * size * size))
        }
    }

    /// Whether source frame `sequence` is kept (and advances the schedule if so).
    public mutating func keeps(_ sequence: Int) -> Bool {
        guard Double(sequence) + 1e-9 >= next else { return false }
        // Catch up over gaps without emitting a burst: the next kept frame is after this one.
        while next <= Double(sequence) + 1e-9 { next += step }
        return true
    }

    /// Feeds one frame; returns a window when this frame completes one.
    public mutating func add(_ frame: CapturedFrame) -> Window? {
        guard keeps(frame.sequence) else { return nil }
        guard let image = frame.image else {
            undecodable += 1
            return nil
        }
        let pixels = preprocess(image)
        precondition(pixels.count == frameSize, "RollingWindow: preprocessing gave \(pixels.count) floats, expected \(frameSize)")
        let slot = sampled % frames
        ring[slot] = pixels
        meta[slot] = (frame.sequence, frame.wallClock, frame.monotonic)
        sampled += 1
        guard sampled >= frames, (sampled - frames) % stride == 0 else { return nil }
        var out = [Float]()
        out.reserveCapacity(frames * frameSize)
        var order: [Int] = []
        for t in 0..<frames {
            let s = (sampled + t) % frames // oldest first
            out += ring[s]
            order.append(s)
        }
        let first = meta[order.first!], last = meta[order.last!]
        return Window(pixels: out, frames: frames, sequences: order.map { meta[$0].sequence },
                      startWallClock: first.wall, endWallClock: last.wall,
                      startMonotonic: first.mono, endMonotonic: last.mono, lastFrame: image)
    }
}
