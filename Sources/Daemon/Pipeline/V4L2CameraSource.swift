import Foundation
import Video

/// A V4L2 camera (`/dev/videoN`) as a `CameraSource`, resilient to the device coming and
/// going.
///
/// `start` opens the device once: a device that exists but cannot do what is asked (not a
/// capture device, pixel format not offered) throws, since reopening will not change that. A
/// device that is missing, busy or failing is reported `offline` and retried. While running,
/// any capture failure (ENODEV when unplugged, EIO, a device that stops delivering for
/// `reopenAfterSeconds`) closes the device, reports `offline` with the error, and reopens it
/// with backoff (`retryDelays`, the last one repeating) until it works: `online` again.
///
/// Frames carry the driver's sequence number (gaps are frames the driver dropped) and its
/// CLOCK_MONOTONIC buffer timestamp; buffers the driver flags as errors are skipped, which
/// leaves a gap too.
///
/// With `clips`, frames are encoded into the ring for clips (`ClipRecorder.beginEncoding` at
/// each opening of the device: a new timeline, since the device may come back at another size).
public final class V4L2CameraSource: CameraSource, @unchecked Sendable {
    public let device: String
    public let request: V4L2Capture.Request
    public let driver: V4L2Driver
    public let retryDelays: [Double]
    public let reopenAfterSeconds: Double
    /// Receives the frames, for clips (nil: none kept).
    let clips: ClipRecorder?

    private let control: SourceControl
    private let lock = NSLock()
    private var _corruptFrames = 0
    private var _reopens = 0

    public var fps: Double { control.fps }
    /// Buffers lost to V4L2_BUF_FLAG_ERROR or that did not decode.
    public var corruptFrames: Int { lock.withLock { _corruptFrames } }
    /// Times the device was opened again after failing.
    public var reopens: Int { lock.withLock { _reopens } }

    public init(device: String, request: V4L2Capture.Request, driver: V4L2Driver = LinuxV4L2Driver.shared,
                retryDelays: [Double] = [0.5, 1, 2, 5, 10], reopenAfterSeconds: Double = 10, clips: ClipRecorder? = nil) {
        precondition(!retryDelays.isEmpty, "V4L2CameraSource: no retry delays")
        self.device = device
        self.request = request
        self.driver = driver
        self.retryDelays = retryDelays
        self.reopenAfterSeconds = reopenAfterSeconds
        self.clips = clips
        control = SourceControl(fps: request.fps)
    }

    public func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
                      onStatus: @escaping @Sendable (CameraSourceStatus) -> Void,
                      onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws {
        control.markStarted("V4L2CameraSource \(device)")
        let first: Result<V4L2Capture, V4L2Error>
        do {
            first = .success(try V4L2Capture(device: device, request: request, driver: driver))
        } catch where !error.isTransient {
            throw error
        } catch {
            first = .failure(error)
        }
        let box = UncheckedBox(first)
        let thread = Thread { [self] in
            let end = self.run(box.value, onFrame: onFrame, onStatus: onStatus)
            self.clips?.end()
            onEnd(end)
        }
        thread.name = "m2clip.v4l2-source"
        thread.start()
    }

    public func stop() {
        control.stop()
    }

    private func run(_ first: Result<V4L2Capture, V4L2Error>, onFrame: (CapturedFrame) -> Void,
                     onStatus: (CameraSourceStatus) -> Void) -> CameraSourceEnd {
        var capture: V4L2Capture?
        var failures = 0
        switch first {
        case .success(let opened):
            capture = opened
            control.fps = opened.fps
            clips?.beginEncoding()
            onStatus(.online)
        case .failure(let error):
            onStatus(.offline("\(error)"))
        }
        var lastFrame = MonotonicClock.now()
        while true {
            if control.isStopping {
                capture?.close()
                return .stopped
            }
            guard let open = capture else {
                // Offline: wait, then try again; every failed attempt waits longer.
                if !control.sleep(retryDelays[min(failures, retryDelays.count - 1)]) { return .stopped }
                failures += 1
                if let reopened = try? V4L2Capture(device: device, request: request, driver: driver) {
                    capture = reopened
                    failures = 0
                    lastFrame = MonotonicClock.now()
                    control.fps = reopened.fps
                    clips?.beginEncoding()
                    lock.withLock { _reopens += 1 }
                    onStatus(.online)
                }
                continue
            }
            do {
                switch try open.next(timeoutMilliseconds: 200) {
                case .frame(let frame):
                    let now = MonotonicClock.now()
                    lastFrame = now
                    // A driver stamps when the frame was captured; the wall clock of that
                    // instant is now's minus the time since.
                    let captured = frame.monotonic.map { min($0, now) } ?? now
                    let held = UncheckedBox(open), sequence = frame.sequence
                    let wallClock = MonotonicClock.wallNow() - (now - captured)
                    onFrame(CapturedFrame(sequence: Int(sequence), wallClock: wallClock, monotonic: captured) { [self] in
                        switch held.value.decodeHeld(sequence: sequence) {
                        case .success(let image): return image
                        case .failure:
                            lock.withLock { _corruptFrames += 1 }
                            return nil
                        }
                    })
                    // The buffer is still held: the clip encoder converts the frame now if it takes it.
                    clips?.deliver(wallClock: wallClock, streamTime: nil) { try? held.value.decodeHeld(sequence: sequence).get() }
                case .timeout:
                    let quiet = MonotonicClock.now() - lastFrame
                    if quiet >= reopenAfterSeconds {
                        throw V4L2Error(device: device, call: "VIDIOC_DQBUF",
                                        detail: String(format: "no frame for %.1f s; reopening", quiet))
                    }
                case .corrupt:
                    lock.withLock { _corruptFrames += 1 }
                }
            } catch {
                open.close()
                capture = nil
                onStatus(.offline("\(error)"))
            }
        }
    }
}
