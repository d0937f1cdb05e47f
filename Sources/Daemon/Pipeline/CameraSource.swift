import Foundation
import Video

/// One frame from a camera, stamped when it was captured.
public struct CapturedFrame: Sendable {
    public var image: RGBFrame
    /// Position in the source's frame sequence at its nominal rate, from 0. A gap means the
    /// source dropped frames; a looping file restarts `image.index` but not this.
    public var sequence: Int
    /// Capture time: seconds since 1970, and monotonic seconds (`MonotonicClock`).
    public var wallClock: Double
    public var monotonic: Double
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

/// A camera as the pipeline sees it: push-based. `start` opens the device or file and returns
/// once frames can flow (or throws); frames then arrive on the source's own thread through
/// `onFrame`, in order, and `onEnd` is called exactly once after the last one. `stop()` asks
/// the source to end (`onEnd(.stopped)`) and may be called from any thread, repeatedly.
///
/// Sources for files, V4L2 devices and network streams implement this; the callbacks must
/// return quickly (the pipeline only preprocesses and hands windows off).
public protocol CameraSource: AnyObject, Sendable {
    /// Nominal frames per second; valid from the first `onFrame` call on.
    var fps: Double { get }
    func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
               onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws
    func stop()
}

/// The clocks frames are stamped with.
public enum MonotonicClock {
    /// Seconds on CLOCK_MONOTONIC (uptime; does not jump with the wall clock).
    public static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    /// Seconds since 1970.
    public static func wallNow() -> Double { Date().timeIntervalSince1970 }
}
