import CFFmpeg

/// A video file opened for random access to its frames (libavformat + libavcodec).
///
/// Frames are addressed by display index: frame `i` is the frame shown at time
/// `i / fps` after the first frame, with `fps` the stream's average frame rate. For constant
/// frame rate that is simply the i-th frame; for variable frame rate it is the frame on screen
/// at that time (so frames repeat across long gaps and short ones are skipped), which is how a
/// fixed-rate sampler should see such a file.
///
///     let video = try VideoFile(path: "clip.mp4")
///     let sample = FrameSampler.segments(frameCount: video.frameCount, frames: 8)
///     let frames = try video.frames(at: sample.indices)      // upright RGB
///     let pixels = CLIPPreprocessor().tensor(frames)          // (8, 3, 224, 224)
///
/// Not thread-safe: one decoder, used by one caller at a time.
public final class VideoFile: FrameSource {
    public let path: String
    /// Frames in the file. From the container header when it says (MP4, MOV, AVI), otherwise
    /// an estimate: duration × average frame rate (Matroska/WebM), or a count of packets when
    /// the duration is unknown too. `decodableFrameCount` corrects it once the end is reached.
    public let frameCount: Int
    public let frameCountIsEstimate: Bool
    /// Average frame rate (avg_frame_rate; r_frame_rate, then 25, when the file gives none).
    public let fps: Double
    /// Seconds: the stream's duration, else the container's, else frameCount / fps.
    public let duration: Double
    /// Size as displayed: after the rotation below.
    public let width: Int
    public let height: Int
    /// Clockwise degrees (0, 90, 180, 270) applied to decoded frames to make them upright, from
    /// the display matrix (phones record portrait video sideways with one).
    public let rotation: Int
    /// FFmpeg's codec name: "h264", "mpeg4", "vp9", "mjpeg", ...
    public let codecName: String
    /// Set once decoding has hit the end of the stream: how many frames actually decode (the
    /// display index of the last one + 1). Smaller than `frameCount` for a truncated file.
    public private(set) var decodableFrameCount: Int?
    /// Packets the decoder rejected as corrupt so far (they are skipped).
    public var rejectedPackets: Int { retiredRejections + input.rejectedPackets }
    /// Frames decoded so far, including those decoded only to reach a later one after a seek:
    /// the cost of the access pattern.
    public private(set) var framesDecoded = 1
    /// Seeks done so far (av_seek_frame calls, and reopenings for containers that cannot seek).
    public internal(set) var seeks = 0

    /// The stream's codec parameters, for muxing its packets unchanged (stream copy).
    public let encodedStream: EncodedStreamParameters?
    /// Presentation time, in seconds on the stream's clock, of the first frame: an
    /// `RGBFrame.timestamp` t is stream time `originSeconds + t`, as `EncodedPacket.time` is.
    public var originSeconds: Double { Double(clock.startTicks) / clock.ticksPerSecond }

    var input: FFmpegInput
    private let packetTap: ((UnsafePointer<AVPacket>) -> Void)?
    private var retiredRejections = 0
    let clock: StreamClock
    let converter = FrameConverter()
    /// The most recently decoded frame and the one before it (display order).
    var held: DecodedFrame?
    var previous: DecodedFrame?
    private var spare: DecodedFrame?
    /// The first frame carried a timestamp. Without timestamps (raw elementary streams) a seek
    /// cannot tell where it landed, so such files are only decoded forward, from the start.
    let hasTimestamps: Bool
    /// Decoding continues from the start of the file (after opening or a rewind), so a frame
    /// without a timestamp can be placed by counting; false after a seek.
    var positionKnown = true

    /// Opens the file, picks its best video stream, and decodes the first frame (proving the
    /// stream decodes, and fixing the time origin and frame size). `packets`, when given, sees
    /// every video packet read from then on, in decode order (a packet is seen again when a
    /// seek or rewind reads it again), on the caller's thread.
    public init(path: String, packets: ((EncodedPacket) -> Void)? = nil) throws {
        self.path = path
        var input = try FFmpegInput(path: path)
        let header = input.stream.pointee // a copy: its pointers die with this first input
        let timeBase = header.time_base
        let seconds = { (ticks: Int64) in Double(ticks) * Double(timeBase.num) / Double(max(timeBase.den, 1)) }

        func rate(_ r: AVRational) -> Double? {
            guard r.num > 0, r.den > 0 else { return nil }
            let value = Double(r.num) / Double(r.den)
            return value <= 1000 ? value : nil
        }
        let fps = rate(header.avg_frame_rate) ?? rate(header.r_frame_rate) ?? 25
        var duration: Double? = nil
        if header.duration != m2ff_nopts_value(), header.duration > 0 {
            duration = seconds(header.duration)
        } else if input.format.pointee.duration != m2ff_nopts_value(), input.format.pointee.duration > 0 {
            duration = Double(input.format.pointee.duration) / Double(m2ff_time_base())
        }
        if header.nb_frames > 0 {
            frameCount = Int(header.nb_frames)
            frameCountIsEstimate = false
        } else if let duration {
            frameCount = max(1, Int((duration * fps).rounded()))
            frameCountIsEstimate = true
        } else {
            frameCount = max(1, input.countPackets())
            frameCountIsEstimate = true
            input = try FFmpegInput(path: path)
        }
        self.fps = fps
        self.duration = duration ?? Double(frameCount) / fps
        rotation = Int(m2ff_stream_rotation(input.stream))
        // The packet count above may have replaced the input: read the stream anew.
        let current = input.stream.pointee
        codecName = String(cString: avcodec_get_name(current.codecpar.pointee.codec_id))
        encodedStream = EncodedStreamParameters(stream: input.stream)
        if let packets {
            let timeBase = current.time_base
            packetTap = { raw in
                if let packet = EncodedPacket(referencing: raw, timeBase: timeBase) { packets(packet) }
            }
        } else {
            packetTap = nil
        }
        input.packetTap = packetTap

        let first = DecodedFrame()
        guard input.decode(into: first.frame) else {
            let rejected = input.rejectedPackets
            throw VideoError(path: path, kind: .corrupt,
                             detail: "no frame decodes" + (rejected > 0 ? "; \(rejected) packets rejected" : ""))
        }
        let origin = first.frame.pointee.best_effort_timestamp
        hasTimestamps = origin != m2ff_nopts_value()
        let startTicks = origin != m2ff_nopts_value() ? origin
            : (current.start_time != m2ff_nopts_value() ? current.start_time : 0)
        first.ticks = startTicks
        clock = StreamClock(timeBase: timeBase, fps: fps, startTicks: startTicks)
        let quarter = rotation == 90 || rotation == 270
        width = Int(quarter ? first.frame.pointee.height : first.frame.pointee.width)
        height = Int(quarter ? first.frame.pointee.width : first.frame.pointee.height)
        self.input = input
        held = first
    }

    /// Decodes the next frame into `held` (the old `held` becomes `previous`); false at the end.
    func decodeNext() -> Bool {
        let box = spare ?? DecodedFrame()
        spare = nil
        av_frame_unref(box.frame)
        guard input.decode(into: box.frame) else {
            spare = box
            return false
        }
        framesDecoded += 1
        let pts = box.frame.pointee.best_effort_timestamp
        if pts != m2ff_nopts_value() {
            box.ticks = pts
            positionKnown = true
        } else if let held {
            box.ticks = held.ticks &+ StreamClock.int64(clock.ticksPerFrame.rounded(.up))
        } else if positionKnown {
            box.ticks = clock.startTicks
        } else {
            // After a seek, a frame without a timestamp could be anywhere: count from the start.
            spare = box
            av_frame_unref(box.frame)
            guard (try? rewind()) != nil else { return false }
            return decodeNext()
        }
        if let old = previous {
            av_frame_unref(old.frame)
            spare = old
        }
        previous = held
        held = box
        return true
    }

    /// Forgets the decoded frames (after a seek or reopen).
    func dropFrames() {
        for box in [held, previous].compactMap({ $0 }) { av_frame_unref(box.frame) }
        if spare == nil { spare = held ?? previous }
        held = nil
        previous = nil
    }

    /// Starts over from the beginning of the file with a fresh demuxer and decoder, for
    /// containers that cannot seek back.
    func rewind() throws {
        retiredRejections += input.rejectedPackets
        input = try FFmpegInput(path: path)
        input.packetTap = packetTap
        seeks += 1
        positionKnown = true
        dropFrames()
    }

    func noteEnd(lastTicks: Int64) {
        let count = clock.index(ofTicks: lastTicks) + 1
        decodableFrameCount = max(decodableFrameCount ?? 0, count)
    }
}

/// An AVFrame owned by Swift, with the timestamp the decoder assigned it.
final class DecodedFrame {
    let frame: UnsafeMutablePointer<AVFrame>
    var ticks: Int64 = 0

    init() {
        guard let frame = av_frame_alloc() else { fatalError("out of memory allocating an AVFrame") }
        self.frame = frame
    }

    deinit {
        var f: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&f)
    }
}

/// Display index ↔ stream timestamp (in the stream's time base) at the average frame rate.
struct StreamClock {
    let timeBase: AVRational
    let fps: Double
    let startTicks: Int64
    /// One frame at the average rate, in time-base ticks.
    let ticksPerFrame: Double
    let ticksPerSecond: Double

    init(timeBase: AVRational, fps: Double, startTicks: Int64) {
        self.timeBase = timeBase
        self.fps = fps
        self.startTicks = startTicks
        ticksPerSecond = Double(max(timeBase.den, 1)) / Double(max(timeBase.num, 1))
        ticksPerFrame = ticksPerSecond / fps
    }

    func ticks(ofIndex index: Int) -> Double { Double(startTicks) + Double(index) * ticksPerFrame }

    /// A tick count as Int64, saturating far outside any real stream (an absurd index must
    /// clamp like any index past the end, not trap).
    static func int64(_ ticks: Double) -> Int64 {
        let limit = 4.0e18
        return Int64(min(max(ticks, -limit), limit).rounded(.down))
    }

    // Differences in Double: a damaged file can carry timestamps near the ends of Int64.
    func index(ofTicks ticks: Int64) -> Int {
        let index = ((Double(ticks) - Double(startTicks)) / ticksPerFrame).rounded()
        return Int(min(max(index, -1e15), 1e15))
    }

    func seconds(ofTicks ticks: Int64) -> Double { (Double(ticks) - Double(startTicks)) / ticksPerSecond }
}
