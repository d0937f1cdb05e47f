import CFFmpeg

/// Why frames could not be encoded.
public struct VideoEncoderError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { "video encoder: \(message)" }
}

/// Packed RGB frames → a compressed video stream for MP4 clips, through libavcodec: H.264 with
/// libx264 (preset `ultrafast`, tune `zerolatency`: no B-frames and no look-ahead, so each frame's
/// packet comes out at once, decode order equal to presentation order), or, in an FFmpeg built
/// without it, FFmpeg's own MPEG-4 part 2 encoder. Both go into MP4 by stream copy
/// (`MP4Muxer`), their headers in the codec parameters (global header).
///
/// RGB24 goes to limited-range 4:2:0 (BT.601) with libswscale at the encoder's size, the
/// frame's size rounded down to even (4:2:0 needs it). Timestamps are the caller's, in
/// milliseconds on any clock that only grows; a keyframe starts every `keyframeInterval`
/// seconds of them. Not thread-safe: one encoder per thread.
public final class VideoEncoder {
    public let width: Int
    public let height: Int
    /// FFmpeg's name of the encoder in use: "libx264" or "mpeg4".
    public let encoderName: String
    /// The stream's codec parameters, for `MP4Muxer`.
    public let stream: EncodedStreamParameters
    public let keyframeInterval: Double

    private var context: UnsafeMutablePointer<AVCodecContext>?
    private var yuv: UnsafeMutablePointer<AVFrame>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private let scaler = RGBScaler(flags: SWS_BILINEAR)
    private var lastPTS: Int64 = .min
    private var nextKeyframe: Int64 = .min
    private let frameMilliseconds: Int64
    static let timeBase = AVRational(num: 1, den: 1000)

    /// An encoder for `width` × `height` frames arriving at about `fps` a second (the rate
    /// control's hint); `crf`: libx264's constant quality (lower is better; the MPEG-4 fallback
    /// maps it to a quantiser).
    public init(width: Int, height: Int, fps: Double, crf: Int = 26, keyframeInterval: Double = 2) throws {
        _ = ffmpegLogLevel
        guard width >= 2, height >= 2 else { throw VideoEncoderError(message: "frames of \(width)x\(height) are too small") }
        precondition(fps > 0 && keyframeInterval > 0, "VideoEncoder fps \(fps), keyframe interval \(keyframeInterval)")
        self.width = width / 2 * 2
        self.height = height / 2 * 2
        self.keyframeInterval = keyframeInterval
        frameMilliseconds = max(1, Int64((1000 / fps).rounded()))
        let (codec, name) = try Self.findEncoder()
        encoderName = name
        context = avcodec_alloc_context3(codec)
        yuv = av_frame_alloc()
        packet = av_packet_alloc()
        guard let context, let yuv, packet != nil else { throw VideoEncoderError(message: "out of memory") }
        context.pointee.width = Int32(self.width)
        context.pointee.height = Int32(self.height)
        context.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        context.pointee.color_range = AVCOL_RANGE_MPEG
        context.pointee.time_base = Self.timeBase
        context.pointee.framerate = AVRational(num: Int32((fps * 1000).rounded()), den: 1000)
        context.pointee.gop_size = Int32(max(1, (fps * keyframeInterval).rounded()))
        context.pointee.max_b_frames = 0
        context.pointee.thread_count = 1
        context.pointee.flags |= Int32(AV_CODEC_FLAG_GLOBAL_HEADER)
        if name == "libx264" {
            av_opt_set(context.pointee.priv_data, "preset", "ultrafast", 0)
            av_opt_set(context.pointee.priv_data, "tune", "zerolatency", 0)
            av_opt_set(context.pointee.priv_data, "crf", "\(crf)", 0)
        } else {
            context.pointee.flags |= Int32(AV_CODEC_FLAG_QSCALE)
            context.pointee.global_quality = Int32(FF_QP2LAMBDA) * Int32(max(2, min(31, crf / 4)))
        }
        let opened = avcodec_open2(context, codec, nil)
        guard opened >= 0 else { throw VideoEncoderError(message: "opening \(name) for \(self.width)x\(self.height): \(ffmpegMessage(opened))") }

        yuv.pointee.width = Int32(self.width)
        yuv.pointee.height = Int32(self.height)
        yuv.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        guard av_frame_get_buffer(yuv, 0) >= 0 else { throw VideoEncoderError(message: "out of memory for \(self.width)x\(self.height)") }
        guard let parameters = EncodedStreamParameters(context: context) else {
            throw VideoEncoderError(message: "copying \(name)'s codec parameters failed")
        }
        stream = parameters
    }

    deinit {
        avcodec_free_context(&context)
        av_frame_free(&yuv)
        av_packet_free(&packet)
    }

    /// libx264 when this FFmpeg has it, else the built-in MPEG-4 part 2 encoder.
    static func findEncoder() throws -> (UnsafePointer<AVCodec>, String) {
        if let x264 = avcodec_find_encoder_by_name("libx264") { return (x264, "libx264") }
        if let mpeg4 = avcodec_find_encoder(AV_CODEC_ID_MPEG4) { return (mpeg4, "mpeg4") }
        throw VideoEncoderError(message: "this FFmpeg build has neither libx264 nor an MPEG-4 encoder")
    }

    /// The packets `frame` gives (presentation time `milliseconds`); empty while the encoder
    /// holds it. A frame whose time is not after the previous one's is skipped (returns []).
    /// A frame of another size than the encoder's is scaled to it.
    public func encode(_ frame: RGBFrame, milliseconds: Int64) throws -> [EncodedPacket] {
        guard milliseconds > lastPTS, let context, let yuv else { return [] }
        try convert(frame, into: yuv)
        yuv.pointee.pts = milliseconds
        if milliseconds >= nextKeyframe {
            yuv.pointee.pict_type = AV_PICTURE_TYPE_I
            nextKeyframe = milliseconds + Int64(keyframeInterval * 1000)
        } else {
            yuv.pointee.pict_type = AV_PICTURE_TYPE_NONE
        }
        lastPTS = milliseconds
        let sent = avcodec_send_frame(context, yuv)
        guard sent >= 0 else { throw VideoEncoderError(message: "\(encoderName): \(ffmpegMessage(sent))") }
        return try receive()
    }

    /// The packets of frames still held (none with zerolatency); the encoder takes no more frames.
    public func flush() throws -> [EncodedPacket] {
        guard let context else { return [] }
        let sent = avcodec_send_frame(context, nil)
        guard sent >= 0 || sent == m2ff_averror_eof() else { throw VideoEncoderError(message: "\(encoderName): \(ffmpegMessage(sent))") }
        return try receive()
    }

    private func receive() throws -> [EncodedPacket] {
        guard let context, let packet else { return [] }
        var out: [EncodedPacket] = []
        while true {
            let received = avcodec_receive_packet(context, packet)
            if received == m2ff_averror_eagain() || received == m2ff_averror_eof() { return out }
            guard received >= 0 else { throw VideoEncoderError(message: "\(encoderName): \(ffmpegMessage(received))") }
            defer { av_packet_unref(packet) }
            // The MPEG-4 encoder leaves dts unset without B-frames: decode order is presentation order.
            if packet.pointee.dts == m2ff_nopts_value() { packet.pointee.dts = packet.pointee.pts }
            // The muxer needs the last frame's duration; the frame interval at the nominal rate.
            if packet.pointee.duration <= 0 { packet.pointee.duration = frameMilliseconds }
            if let encoded = EncodedPacket(referencing: packet, timeBase: Self.timeBase) { out.append(encoded) }
        }
    }

    /// RGB24 → yuv420p at the encoder's size (SWS_BILINEAR; BT.601 limited range).
    private func convert(_ frame: RGBFrame, into yuv: UnsafeMutablePointer<AVFrame>) throws {
        guard av_frame_make_writable(yuv) >= 0 else { throw VideoEncoderError(message: "out of memory") }
        guard scaler.scale(frame, into: yuv) else {
            throw VideoEncoderError(message: "converting \(frame.width)x\(frame.height) RGB to yuv420p failed")
        }
    }
}
