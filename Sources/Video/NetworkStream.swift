import CFFmpeg
import Glibc

/// A live video stream read front to back from a URL (RTSP, HTTP, UDP, any protocol
/// libavformat opens), decoded to upright RGB24 frames.
///
///     let cancellation = StreamCancellation()       // cancel() from any thread, any time
///     let stream = try NetworkStream(url: StreamURL("rtsp://user:pass@cam/main"),
///                                    cancellation: cancellation)
///     while let frame = try stream.next() { ... }  // nil: the stream ended (EOF)
///
/// No call waits forever: opening (connecting, then avformat_find_stream_info) must finish
/// within `openTimeout` seconds and each `next()` within `readTimeout`, or it throws
/// `.timedOut` (an AVIOInterruptCB deadline, backed by the protocols' own socket timeouts);
/// `cancel()` on the cancellation makes a blocked call throw `.cancelled` at once. Errors name
/// the URL without its credentials.
///
/// Not thread-safe apart from the cancellation: one reader calls `next()`.
public final class NetworkStream {
    public let url: StreamURL
    public let openTimeout: Double
    public let readTimeout: Double
    public let cancellation: StreamCancellation
    /// Nominal frame rate (avg_frame_rate; r_frame_rate, then 25, when the stream gives none):
    /// the rate `RGBFrame.index` counts at.
    public let fps: Double
    /// Clockwise degrees (0, 90, 180, 270) applied to make frames upright (display matrix).
    public let rotation: Int
    /// FFmpeg's codec name: "h264", "hevc", "mjpeg", ...
    public let codecName: String
    /// Packets the decoder rejected as corrupt so far (they are skipped).
    public var rejectedPackets: Int { input.rejectedPackets }
    /// The stream's codec parameters, for muxing its packets unchanged (stream copy).
    public let encodedStream: EncodedStreamParameters?
    /// Presentation time, in seconds on the stream's clock, of the first frame (0 before it):
    /// an `RGBFrame.timestamp` t is stream time `originSeconds + t`, as `EncodedPacket.time` is.
    public var originSeconds: Double { clock.map { Double($0.startTicks) / $0.ticksPerSecond } ?? 0 }

    private let interrupt: StreamInterrupt
    private let input: FFmpegInput
    private let converter = FrameConverter()
    private let decoded = DecodedFrame()
    /// Fixed by the first frame: its timestamp is time 0 and index 0.
    private var clock: StreamClock?
    private var lastTicks: Int64?
    private var ending: Ending?

    /// Why the input stopped giving packets, noted in the `next()` call where it happened (the
    /// decoder may still hold frames to deliver after it).
    private enum Ending {
        case interrupted(StreamInterrupt.Cause)
        /// av_read_frame's error, AVERROR_EOF for a clean end.
        case read(Int32)
        /// Every packet was rejected.
        case decoderGaveUp
    }

    /// Connects, reads the stream headers and picks the video stream; throws `VideoError`
    /// (`.connectionFailed`, `.timedOut`, `.cancelled`, `.noVideoStream`, ...) naming
    /// `url.redacted`. Timeouts are in seconds. `packets`, when given, sees every video packet
    /// read, in decode order, on the caller's thread.
    public init(url: StreamURL, openTimeout: Double = 10, readTimeout: Double = 5,
                cancellation: StreamCancellation = StreamCancellation(),
                packets: ((EncodedPacket) -> Void)? = nil) throws {
        precondition(openTimeout > 0 && readTimeout > 0,
                     "NetworkStream: timeouts \(openTimeout) s and \(readTimeout) s must be positive")
        self.url = url
        self.openTimeout = openTimeout
        self.readTimeout = readTimeout
        self.cancellation = cancellation
        let interrupt = StreamInterrupt(cancellation: cancellation)
        self.interrupt = interrupt
        if cancellation.isCancelled {
            throw VideoError(path: url.redacted, kind: .cancelled, detail: "before connecting")
        }
        // A second past the longest deadline, so that the deadline wins.
        let socketTimeout = max(openTimeout, readTimeout) + 1
        interrupt.arm(seconds: openTimeout)
        input = try FFmpegInput(url: url.string, name: url.redacted,
                                options: NetworkStream.protocolOptions(for: url, socketTimeout: socketTimeout),
                                interrupt: interrupt) { step, code in
            NetworkStream.openFailure(url: url, step: step, code: code, cause: interrupt.cause,
                                      openTimeout: openTimeout)
        }
        fps = input.frameRate
        rotation = Int(m2ff_stream_rotation(input.stream))
        codecName = String(cString: avcodec_get_name(input.stream.pointee.codecpar.pointee.codec_id))
        encodedStream = EncodedStreamParameters(stream: input.stream)
        if let packets {
            let timeBase = input.stream.pointee.time_base
            input.packetTap = { raw in
                if let packet = EncodedPacket(referencing: raw, timeBase: timeBase) { packets(packet) }
            }
        }
    }

    deinit {
        // avformat_close_input may still talk to the server (RTSP TEARDOWN): bound it too.
        interrupt.arm(seconds: min(readTimeout, 1))
    }

    /// The next frame in display order, upright RGB: `timestamp` in seconds from the first
    /// frame's presentation time, `index` and `sourceIndex` that time × `fps`, rounded (so a
    /// gap in `index` is frames the stream skipped). nil once the stream has ended (EOF), and
    /// ever after; throws `.timedOut` when no frame decodes within `readTimeout`, `.cancelled`,
    /// or `.connectionLost`.
    public func next() throws -> RGBFrame? {
        if cancellation.isCancelled { throw VideoError(path: url.redacted, kind: .cancelled, detail: "while reading") }
        interrupt.arm(seconds: readTimeout)
        av_frame_unref(decoded.frame)
        let gotFrame = input.decode(into: decoded.frame)
        if ending == nil && (input.endCode != nil || !gotFrame) {
            ending = interrupt.cause.map(Ending.interrupted) ?? input.endCode.map(Ending.read) ?? .decoderGaveUp
        }
        guard gotFrame else { return try conclude(ending!) }

        let frame = decoded.frame
        let stream = input.stream.pointee
        let pts = frame.pointee.best_effort_timestamp
        let ticks: Int64
        if pts != m2ff_nopts_value() {
            ticks = pts
        } else if let lastTicks, let clock {
            ticks = lastTicks &+ StreamClock.int64(clock.ticksPerFrame.rounded(.up))
        } else {
            ticks = stream.start_time != m2ff_nopts_value() ? stream.start_time : 0
        }
        let clock = self.clock ?? StreamClock(timeBase: stream.time_base, fps: fps, startTicks: ticks)
        self.clock = clock
        lastTicks = ticks
        let index = clock.index(ofTicks: ticks)
        guard let image = converter.convert(frame, rotation: rotation) else {
            let format = av_get_pix_fmt_name(AVPixelFormat(rawValue: frame.pointee.format))
                .map { String(cString: $0) } ?? "\(frame.pointee.format)"
            throw VideoError(path: url.redacted, kind: .frameNotDecodable(index),
                             detail: "cannot convert pixel format \(format) to RGB")
        }
        return RGBFrame(width: image.width, height: image.height, rgb: image.rgb, index: index,
                        timestamp: clock.seconds(ofTicks: ticks), sourceIndex: index, clamped: false)
    }

    private func conclude(_ ending: Ending) throws -> RGBFrame? {
        let name = url.redacted
        switch ending {
        case .interrupted(.cancelled):
            throw VideoError(path: name, kind: .cancelled, detail: "while reading")
        case .interrupted(.deadline):
            throw VideoError(path: name, kind: .timedOut, detail: "reading: no frame within \(seconds(readTimeout))")
        case .read(let code) where code == m2ff_averror_eof():
            return nil
        case .read(let code) where code == m2ff_averror(ETIMEDOUT):
            throw VideoError(path: name, kind: .timedOut, detail: "reading: \(ffmpegMessage(code))")
        case .read(let code) where code == m2ff_averror_invaliddata():
            throw VideoError(path: name, kind: .corrupt, detail: "reading: \(ffmpegMessage(code))")
        case .read(let code):
            throw VideoError(path: name, kind: .connectionLost, detail: ffmpegMessage(code))
        case .decoderGaveUp:
            throw VideoError(path: name, kind: .corrupt,
                             detail: "the decoder rejects every packet (\(input.rejectedPackets) rejected)")
        }
    }

    /// The error for a failed avformat_open_input (`.open`) or avformat_find_stream_info
    /// (`.probe`). The interrupt's cause comes first: an aborted call returns whatever code the
    /// protocol had at hand (AVERROR_EXIT, EIO, EOF).
    static func openFailure(url: StreamURL, step: OpenStep, code: Int32, cause: StreamInterrupt.Cause?,
                            openTimeout: Double) -> VideoError {
        let name = url.redacted
        let doing = step == .open ? "connecting" : "reading the stream headers"
        switch cause {
        case .cancelled:
            return VideoError(path: name, kind: .cancelled, detail: "while \(doing)")
        case .deadline:
            let what = step == .open ? "no answer" : "not done"
            return VideoError(path: name, kind: .timedOut, detail: "\(doing): \(what) within \(seconds(openTimeout))")
        case nil:
            break
        }
        if code == m2ff_averror(ETIMEDOUT) {
            return VideoError(path: name, kind: .timedOut, detail: "\(doing): \(ffmpegMessage(code))")
        }
        if code == m2ff_averror_invaliddata() {
            return VideoError(path: name, kind: step == .open ? .notMediaFile : .corrupt, detail: ffmpegMessage(code))
        }
        return VideoError(path: name, kind: step == .open ? .connectionFailed : .connectionLost,
                          detail: ffmpegMessage(code))
    }

    /// avformat_open_input options for `url`.
    ///
    /// The interrupt deadlines are what should fire: they know whether it was connecting or
    /// reading and say so, where the RTSP demuxer reports its own socket timeout as invalid
    /// data. The protocols' timeouts, `socketTimeout` seconds, are the backstop for a wait that
    /// does not poll the callback: rw_timeout for each read and write of any URLContext
    /// protocol, and `timeout`, the socket I/O timeout of tcp, tls, udp, http and the RTSP
    /// demuxer (FFmpeg ≥ 5) but "listen for a connection" to rtmp, hence per scheme.
    /// RTSP goes over TCP: UDP packets are lost through NAT and firewalls, and a lost packet
    /// is a broken frame. HTTP reconnects by itself after a cut before the end of a known
    /// length, retrying for no longer than the backstop.
    static func protocolOptions(for url: StreamURL, socketTimeout: Double) -> [(key: String, value: String)] {
        let microseconds = String(Int64(socketTimeout * 1e6))
        var options: [(key: String, value: String)] = [("rw_timeout", microseconds)]
        switch url.scheme {
        case "rtsp", "rtsps":
            options += [("rtsp_transport", "tcp"), ("timeout", microseconds)]
        case "http", "https":
            options += [("timeout", microseconds), ("reconnect", "1"), ("reconnect_streamed", "1"),
                        ("reconnect_delay_max", String(max(1, Int(socketTimeout))))]
        case "tcp", "tls", "udp":
            options.append(("timeout", microseconds))
        default:
            break
        }
        return options
    }
}

/// "10 s", "1.5 s".
private func seconds(_ value: Double) -> String {
    (value == value.rounded() && abs(value) < 1e15 ? "\(Int64(value))" : "\(value)") + " s"
}
