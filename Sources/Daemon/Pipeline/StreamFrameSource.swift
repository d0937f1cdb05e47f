import Foundation
import Video

/// A network camera (RTSP, HTTP, any URL libavformat opens) as a `CameraSource`.
///
/// `start` only checks the URL (`StreamURL`) and starts the source's thread, which connects
/// (`NetworkStream`), reports `online`, and delivers frames as they decode, stamped at receipt.
/// Sequence numbers come from the stream timestamps × the frame rate, so frames the camera or
/// network lost show up as gaps; they start again from 0 on each connection.
///
/// When the stream fails, stalls past `readTimeout` or ends (a live stream has no end: EOF is a
/// dropped connection) the source reports `offline` with the reason, once, and reconnects
/// after `reconnectDelays[0]`, then `[1]`, ... repeating the last delay, until a connection
/// delivers a frame again (which resets the schedule) or `stop()`. A first connection that
/// fails is reported the same way. `stop()` aborts a blocked connect or read through the
/// stream's interrupt callback, so the thread ends with `onEnd(.stopped)` promptly.
///
/// With `clips`, each connection's packets (H.264: copied) or frames (another codec: encoded)
/// go to the ring on a timeline of their own (`begin` per connection).
///
/// Messages carry `redactedURL`: the URL's credentials never reach a log.
public final class StreamFrameSource: CameraSource, @unchecked Sendable {
    /// The URL without `user:password@`, for messages.
    public let redactedURL: String
    /// Seconds: connecting and reading the stream headers; then waiting for each frame.
    public let openTimeout: Double
    public let readTimeout: Double
    /// Seconds to wait before each reconnection attempt after a drop.
    public let reconnectDelays: [Double]

    private let url: String
    /// Receives each connection's packets, for clips (nil: none kept).
    let clips: ClipRecorder?
    private let cancellation = StreamCancellation()
    private let control = SourceControl()
    public var fps: Double { control.fps }

    public init(url: String, openTimeout: Double = 10, readTimeout: Double = 5,
                reconnectDelays: [Double] = [0.5, 1, 2, 4, 8], clips: ClipRecorder? = nil) {
        let redacted = StreamURL.redacting(url)
        precondition(openTimeout > 0 && readTimeout > 0,
                     "StreamFrameSource \(redacted): timeouts \(openTimeout) s, \(readTimeout) s")
        precondition(!reconnectDelays.isEmpty && reconnectDelays.allSatisfy { $0 >= 0 && $0.isFinite },
                     "StreamFrameSource \(redacted): reconnect delays \(reconnectDelays)")
        self.url = url
        self.clips = clips
        redactedURL = redacted
        self.openTimeout = openTimeout
        self.readTimeout = readTimeout
        self.reconnectDelays = reconnectDelays
    }

    /// Throws `VideoError` (`.invalidURL`) for a URL that cannot work; the network is not touched.
    public func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
                      onStatus: @escaping @Sendable (CameraSourceStatus) -> Void,
                      onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws {
        let address = try StreamURL(url)
        control.markStarted("StreamFrameSource \(redactedURL)")
        let thread = Thread { [self] in
            run(address, onFrame: onFrame, onStatus: onStatus)
            clips?.end()
            onEnd(.stopped)
        }
        thread.name = "m2clip.stream-source"
        thread.start()
    }

    public func stop() {
        control.stop()
        cancellation.cancel()
    }

    private var isStopping: Bool { control.isStopping }

    /// Connects, delivers and reconnects until stopped.
    private func run(_ address: StreamURL, onFrame: (CapturedFrame) -> Void,
                     onStatus: (CameraSourceStatus) -> Void) {
        var failures = 0 // consecutive connections that gave no frame: the backoff step
        var offline = false
        while !isStopping {
            let reason: String
            do {
                clips?.begin()
                let stream = try NetworkStream(url: address, openTimeout: openTimeout, readTimeout: readTimeout,
                                               cancellation: cancellation, packets: clips.map { ring in { ring.add($0) } })
                clips?.attach(stream.encodedStream)
                control.fps = stream.fps
                onStatus(.online)
                offline = false
                let (why, delivered) = deliver(stream, onFrame: onFrame)
                reason = why
                if delivered { failures = 0 }
            } catch {
                reason = "\(error)"
            }
            if isStopping { return }
            if !offline {
                onStatus(.offline(reason))
                offline = true
            }
            let delay = reconnectDelays[min(failures, reconnectDelays.count - 1)]
            failures += 1
            if !control.sleep(delay) { return }
        }
    }

    /// Frames of one connection until it drops or the source stops: why it dropped, and
    /// whether any frame came.
    private func deliver(_ stream: NetworkStream, onFrame: (CapturedFrame) -> Void) -> (String, Bool) {
        var delivered = false
        // sequence = base + index; base moves when the stream's clock jumps back (a camera
        // restarting its timestamps), so sequences only ever increase.
        var base = 0, last = -1
        while true {
            let image: RGBFrame?
            do {
                image = try stream.next()
            } catch {
                return ("\(error)", delivered)
            }
            guard let image else { return ("video \(redactedURL): the stream ended", delivered) }
            if isStopping { return ("stopped", delivered) }
            if base + image.index <= last { base = last + 1 - image.index }
            last = base + image.index
            let wallClock = MonotonicClock.wallNow()
            clips?.deliver(wallClock: wallClock, streamTime: stream.originSeconds + image.timestamp) { image }
            onFrame(CapturedFrame(image: image, sequence: last, wallClock: wallClock, monotonic: MonotonicClock.now()))
            delivered = true
        }
    }
}
