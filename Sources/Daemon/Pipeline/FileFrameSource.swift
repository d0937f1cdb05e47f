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

    /// Receives the file's packets (H.264) or frames (another codec), for clips (nil: none kept).
    let clips: ClipRecorder?

    public init(path: String, loop: Bool = false, realTime: Bool = true, batch: Int = 4, clips: ClipRecorder? = nil) {
        precondition(batch >= 1, "FileFrameSource: batch \(batch)")
        self.clips = clips
        self.path = path
        self.loop = loop
        self.realTime = realTime
        self.batch = batch
    }

    public func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
                      onStatus: @escaping @Sendable (CameraSourceStatus) -> Void,
                      onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws {
        let video = try open()
        control.markStarted("FileFrameSource \(path)")
        control.fps = video.fps
        let box = UncheckedBox(video)
        let thread = Thread { [self] in
            onStatus(.online)
            let end = self.run(box.value, onFrame: onFrame)
            self.clips?.end()
            onEnd(end)
        }
        thread.name = "m2clip.file-source"
        thread.start()
    }

    public func stop() {
        control.stop()
    }

    /// The file, from its start, its packets or frames going to `clips` on a new timeline.
    private func open() throws -> VideoFile {
        guard let clips else { return try VideoFile(path: path) }
        clips.begin()
        let video = try VideoFile(path: path, packets: { clips.add($0) })
        clips.attach(video.encodedStream)
        return video
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
                    let wallClock = MonotonicClock.wallNow()
                    clips?.deliver(wallClock: wallClock, streamTime: video.originSeconds + frame.timestamp) { frame }
                    onFrame(CapturedFrame(image: frame, sequence: sequence, wallClock: wallClock, monotonic: now))
                    sequence += 1
                    deliveredThisPass += 1
                }
                index += batch
            }
            guard loop else { return .endOfStream }
            guard deliveredThisPass > 0 else { return .failed("video \(path): no frame decodes") }
            do {
                video = try open()
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
