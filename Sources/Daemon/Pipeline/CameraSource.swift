import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Video

/// One frame from a camera, stamped when it was captured.
public struct CapturedFrame: Sendable {
    /// Position in the source's frame sequence at its nominal rate, from 0. A gap means the
    /// source dropped frames; a looping file restarts the image's `index` but not this.
    public var sequence: Int
    /// Capture time: seconds since 1970, and monotonic seconds (`MonotonicClock`).
    public var wallClock: Double
    public var monotonic: Double
    private let produce: @Sendable () -> RGBFrame?

    /// The pixels, upright RGB. A V4L2 frame converts the driver's buffer here, on first use,
    /// so frames the sampler skips cost no conversion: ask only inside `onFrame` (the buffer
    /// goes back to the driver afterwards). nil when the buffer does not decode (a broken
    /// JPEG from the camera).
    public var image: RGBFrame? { produce() }

    public init(image: RGBFrame, sequence: Int, wallClock: Double, monotonic: Double) {
        self.init(sequence: sequence, wallClock: wallClock, monotonic: monotonic, decode: { image })
    }

    /// A frame whose pixels `decode` produces when asked (valid during `onFrame` only).
    public init(sequence: Int, wallClock: Double, monotonic: Double, decode: @escaping @Sendable () -> RGBFrame?) {
        self.sequence = sequence
        self.wallClock = wallClock
        self.monotonic = monotonic
        produce = decode
    }
}

/// Why a source stopped delivering frames.
public enum CameraSourceEnd: Sendable, Equatable {
    /// A file without `loop` reached its end.
    case endOfStream
    /// `stop()` was called.
    case stopped
    /// Opening or reading failed; the message says what and where.
    case failed(String)

    /// For `camera.status offline`.
    public var reason: String {
        switch self {
        case .endOfStream: return "end of stream"
        case .stopped: return "stopped"
        case .failed(let message): return message
        }
    }
}

/// A live source's connection state, reported while it runs.
public enum CameraSourceStatus: Sendable, Equatable {
    /// Frames flow (again). Reported once the device or stream is open.
    case online
    /// The device or stream went away (unplugged, I/O error, stream dropped); the source keeps
    /// trying to reopen it and reports `online` when it is back. Frame sequence numbers may
    /// restart after it.
    case offline(String)
}

/// A camera as the pipeline sees it: push-based. `start` checks what can be checked at once
/// (a file that does not open, a device that is not a camera) and throws for that; otherwise
/// it returns and the source works on its own thread: `onStatus(.online)` when frames can
/// flow, frames through `onFrame` in order, `onStatus(.offline)` / `.online` as a device comes
/// and goes, and `onEnd` exactly once after the last frame. `stop()` asks the source to end
/// (`onEnd(.stopped)`) and may be called from any thread, repeatedly.
///
/// Sources for files, V4L2 devices and network streams implement this; the callbacks come from
/// one thread at a time and must return quickly (the pipeline only preprocesses and hands
/// windows off).
public protocol CameraSource: AnyObject, Sendable {
    /// Nominal frames per second; valid from the first `onFrame` call on.
    var fps: Double { get }
    func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
               onStatus: @escaping @Sendable (CameraSourceStatus) -> Void,
               onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws
    func stop()
}

extension CameraSource {
    /// `start` for callers that do not follow the connection state.
    public func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
                      onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws {
        try start(onFrame: onFrame, onStatus: { _ in }, onEnd: onEnd)
    }
}

/// The clocks frames are stamped with.
public enum MonotonicClock {
    /// Seconds on CLOCK_MONOTONIC (does not jump with the wall clock), the clock V4L2 drivers
    /// stamp buffers with (V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC).
    public static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
    /// Seconds since 1970.
    public static func wallNow() -> Double { Date().timeIntervalSince1970 }
}

/// The state every source's capture thread shares with `stop()` and `fps`: started once,
/// stopping, the current frame rate, and sleeps that `stop()` cuts short.
final class SourceControl: @unchecked Sendable {
    private let condition = NSCondition()
    private var started = false
    private var stopping = false
    private var rate: Double

    init(fps: Double = 0) { rate = fps }

    var fps: Double {
        get { condition.withLock { rate } }
        set { condition.withLock { rate = newValue } }
    }

    var isStopping: Bool { condition.withLock { stopping } }

    /// Traps on a second start of the same source (`name` says which).
    func markStarted(_ name: @autoclosure () -> String) {
        condition.withLock {
            precondition(!started, "\(name()): started twice")
            started = true
        }
    }

    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    /// Sleeps until monotonic time `deadline`; false when stopped meanwhile.
    func sleep(until deadline: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stopping {
            let remaining = deadline - MonotonicClock.now()
            if remaining <= 0 { return true }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining))
        }
        return false
    }

    /// Sleeps `seconds`; false when stopped meanwhile.
    func sleep(_ seconds: Double) -> Bool { sleep(until: MonotonicClock.now() + seconds) }
}
