import CFFmpeg

/// Why a frame could not be encoded as JPEG.
public struct JPEGEncoderError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { "JPEG encoder: \(message)" }
}

/// Packed RGB frames → baseline JPEG (JFIF) bytes through libavcodec's MJPEG encoder.
///
/// RGB24 goes to full-range 4:2:0 (yuvj420p, BT.601, the JPEG convention) with libswscale,
/// optionally scaled down to at most `maxWidth` pixels wide (aspect kept, even sizes); the
/// encoder runs at a fixed quantiser (`-q:v` of the ffmpeg CLI) derived from `quality`.
/// Not thread-safe: one encoder per thread.
public final class JPEGEncoder {
    /// 1 (smallest) … 100 (best), like libjpeg's scale.
    public let quality: Int
    /// Frames wider than this are scaled down; nil: full size.
    public let maxWidth: Int?
    private let scaler = RGBScaler(flags: SWS_BICUBIC)

    public init(quality: Int = 85, maxWidth: Int? = nil) {
        precondition((1...100).contains(quality), "JPEG quality \(quality) is not in 1...100")
        self.quality = quality
        self.maxWidth = maxWidth
        _ = ffmpegLogLevel
    }

    /// The MJPEG quantiser for `quality`: 100 → 2 (the CLI's best usual setting), 1 → 31.
    static func quantiser(quality: Int) -> Int32 {
        Int32((2 + Double(100 - quality) * 29 / 99).rounded())
    }

    /// The size `frame` is encoded at.
    public func outputSize(width: Int, height: Int) -> (width: Int, height: Int) {
        guard let maxWidth, width > maxWidth else { return (width, height) }
        let scaledHeight = max(2, Int((Double(height) * Double(maxWidth) / Double(width)).rounded() / 2) * 2)
        return (max(2, maxWidth / 2 * 2), scaledHeight)
    }

    /// One JPEG file's bytes for `frame` ((height, width, 3) RGB).
    public func encode(_ frame: RGBFrame) throws -> [UInt8] {
        let (width, height) = outputSize(width: frame.width, height: frame.height)
        guard let codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG) else {
            throw JPEGEncoderError(message: "this FFmpeg build has no MJPEG encoder")
        }
        var ownedContext = avcodec_alloc_context3(codec)
        defer { avcodec_free_context(&ownedContext) }
        guard let context = ownedContext else { throw JPEGEncoderError(message: "out of memory") }
        context.pointee.width = Int32(width)
        context.pointee.height = Int32(height)
        context.pointee.pix_fmt = AV_PIX_FMT_YUVJ420P
        context.pointee.color_range = AVCOL_RANGE_JPEG
        context.pointee.time_base = AVRational(num: 1, den: 25)
        context.pointee.flags |= Int32(AV_CODEC_FLAG_QSCALE)
        let lambda = Int32(FF_QP2LAMBDA) * Self.quantiser(quality: quality)
        context.pointee.global_quality = lambda
        let opened = avcodec_open2(context, codec, nil)
        guard opened >= 0 else { throw JPEGEncoderError(message: "opening MJPEG: \(ffmpegMessage(opened))") }

        var ownedYUV = av_frame_alloc()
        defer { av_frame_free(&ownedYUV) }
        guard let yuv = ownedYUV else { throw JPEGEncoderError(message: "out of memory") }
        yuv.pointee.width = Int32(width)
        yuv.pointee.height = Int32(height)
        yuv.pointee.format = AV_PIX_FMT_YUVJ420P.rawValue
        yuv.pointee.color_range = AVCOL_RANGE_JPEG
        yuv.pointee.quality = lambda
        guard av_frame_get_buffer(yuv, 0) >= 0 else { throw JPEGEncoderError(message: "out of memory for \(width)x\(height)") }
        try convert(frame, into: yuv)

        var ownedPacket = av_packet_alloc()
        defer { av_packet_free(&ownedPacket) }
        guard let packet = ownedPacket else { throw JPEGEncoderError(message: "out of memory") }
        let sent = avcodec_send_frame(context, yuv)
        guard sent >= 0 else { throw JPEGEncoderError(message: "encoding: \(ffmpegMessage(sent))") }
        let received = avcodec_receive_packet(context, packet)
        guard received >= 0, let data = packet.pointee.data, packet.pointee.size > 0 else {
            throw JPEGEncoderError(message: "encoding: \(ffmpegMessage(received))")
        }
        return Array(UnsafeBufferPointer(start: data, count: Int(packet.pointee.size)))
    }

    /// RGB24 → yuvj420p at `yuv`'s size (SWS_BICUBIC; BT.601 full range out).
    private func convert(_ frame: RGBFrame, into yuv: UnsafeMutablePointer<AVFrame>) throws {
        guard scaler.scale(frame, into: yuv) else {
            throw JPEGEncoderError(message: "converting \(frame.width)x\(frame.height) RGB to yuvj420p failed")
        }
    }
}
