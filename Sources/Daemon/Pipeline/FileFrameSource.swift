import Foundation
import Video

/// Plays a video file as a camera: decodes it front to back (`VideoFile.frames(at:)` over
/// increasing indices, `batch` at a time), paces delivery to real time at the file's frame
/// rate on the monotonic clock, and optionally loops. Frames are stamped with the time they
/// are delivered, as a live camera's would be.
public final class FileFrameSource: CameraSource, @unchecked Sendable {
    public let path: String
    public let loop: Bool
    /// false: deliver as fast as decoding allows (tests, benchmarks).
    public let realTime: Bool
    public let batch: Int

    private let control = SourceControl()
    public var fps: Double { control.fps }

    public init(path: String, loop: Bool = false, realTime: Bool = true, batch: Int = 4) {
        precondition(batch >= 1, "FileFrameSource: batch \(batch)")
        self.path = path
        self.loop = loop
        self.realTime = realTime
        self.batch = batch
    }

    public func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
                      onStatus: @escaping @Sendable (CameraSourceStatus) -> Void,
                      onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws {
        let video = try VideoFile(path: path)
        control.markStarted("FileFrameSource \(path)")
        control.fps = video.fps
        let box = UncheckedBox(video)
        let thread = Thread { [self] in
            onStatus(.online)
            onEnd(self.run(box.value, onFrame: onFrame))
        }
        thread.name = "m2clip.file-source"
        thread.start()
    }

    public func stop() {
        control.stop()
    }

    /// The capture loop; returns why it ended.
    private func run(_ first: VideoFile, onFrame: (CapturedFrame) -> Void) -> CameraSourceEnd {
        var video = first
        let interval = 1 / video.fps
        // Frame k is due k / fps after frame 0 was delivered; a frame decoded late goes out at
        // once, so the stream catches up rather than drifting.
        var origin: Double?
        var sequence = 0
        while true {
            var index = 0, deliveredThisPass = 0
            passLoop: while true {
                let frames: [RGBFrame]
                do {
                    frames = try video.frames(at: Array(index..<(index + batch)))
                } catch {
                    return .failed("\(error)")
                }
                for frame in frames {
                    if frame.clamped { break passLoop }
                    if realTime, let origin, !control.sleep(until: origin + Double(sequence) * interval) { return .stopped }
                    if control.isStopping { return .stopped }
                    let now = MonotonicClock.now()
                    if origin == nil { origin = now }
                    onFrame(CapturedFrame(image: frame, sequence: sequence, wallClock: MonotonicClock.wallNow(),
                                          monotonic: now))
                    sequence += 1
                    deliveredThisPass += 1
                }
                index += batch
            }
            guard loop else { return .endOfStream }
            guard deliveredThisPass > 0 else { return .failed("video \(path): no frame decodes") }
            do {
                video = try VideoFile(path: path)
            } catch {
                return .failed("\(error)")
            }
        }
    }
}

/// Hands a non-Sendable value to exactly one other thread.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
