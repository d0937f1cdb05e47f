import CFFmpeg
import CV4L2

/// The pixel formats m2clip captures, by fourcc.
public enum V4L2PixelFormat: String, CaseIterable, Sendable {
    case yuyv = "YUYV"
    case nv12 = "NV12"
    case mjpeg = "MJPG"

    /// Preference when the configuration names none: uncompressed first (no decode cost, no
    /// JPEG artefacts), MJPEG for cameras that only reach their size and rate compressed.
    public static let preference: [V4L2PixelFormat] = [.yuyv, .nv12, .mjpeg]

    public var fourcc: UInt32 {
        let c = Array(rawValue.utf8).map { CChar(bitPattern: $0) }
        return m2v_fourcc(c[0], c[1], c[2], c[3])
    }

    public init?(fourcc: UInt32) {
        guard let format = Self.allCases.first(where: { $0.fourcc == fourcc }) else { return nil }
        self = format
    }

    /// "YUYV" for a fourcc, readable for formats we do not take too.
    public static func name(_ fourcc: UInt32) -> String {
        let bytes = (0..<4).map { UInt8((fourcc >> (8 * UInt32($0))) & 0xff) }
        let printable = bytes.map { (0x20..<0x7f).contains($0) ? $0 : UInt8(ascii: "?") }
        return String(decoding: printable, as: UTF8.self).split(separator: " ").joined()
    }
}

/// What S_FMT settled on: the geometry and colour description frames arrive in.
public struct V4L2FrameLayout: Sendable, Equatable {
    public var format: V4L2PixelFormat
    public var width: Int
    public var height: Int
    /// Bytes per row of the first plane (≥ width × bytes per pixel).
    public var bytesPerLine: Int
    /// Bytes of one uncompressed frame; for MJPEG, the buffer size.
    public var sizeImage: Int
    /// BT.709 matrix (else BT.601), and full-range YCbCr (else limited).
    public var bt709: Bool
    public var fullRange: Bool

    public init(format: V4L2PixelFormat, width: Int, height: Int, bytesPerLine: Int, sizeImage: Int,
                bt709: Bool = false, fullRange: Bool = false) {
        self.format = format
        self.width = width
        self.height = height
        self.bytesPerLine = bytesPerLine
        self.sizeImage = sizeImage
        self.bt709 = bt709
        self.fullRange = fullRange
    }

    /// From the driver's `v4l2_pix_format` (its colorspace fields decide matrix and range the
    /// way the V4L2 defaults table does: REC709 colorspace → BT.709, else BT.601; limited range
    /// unless the driver says full).
    init?(_ pix: v4l2_pix_format) {
        guard let format = V4L2PixelFormat(fourcc: pix.pixelformat) else { return nil }
        let encoding = pix.ycbcr_enc
        let bt709 = encoding == V4L2_YCBCR_ENC_709.rawValue
            || (encoding == V4L2_YCBCR_ENC_DEFAULT.rawValue && pix.colorspace == V4L2_COLORSPACE_REC709.rawValue)
        self.init(format: format, width: Int(pix.width), height: Int(pix.height), bytesPerLine: Int(pix.bytesperline),
                  sizeImage: Int(pix.sizeimage), bt709: bt709,
                  fullRange: pix.quantization == UInt32(V4L2_QUANTIZATION_FULL_RANGE.rawValue))
    }

    /// Bytes a complete uncompressed frame needs; nil for MJPEG (any size).
    var requiredBytes: Int? {
        switch format {
        case .yuyv: return bytesPerLine * height
        case .nv12: return bytesPerLine * height * 3 / 2
        case .mjpeg: return nil
        }
    }
}

/// Captured buffers → upright RGB24: YUYV and NV12 through libswscale (the same converter and
/// scaler flags as file decoding, with the matrix and range the driver declared), MJPEG
/// through libavcodec's MJPEG decoder. One decoder per stream; not thread-safe.
public final class V4L2FrameDecoder {
    public let layout: V4L2FrameLayout
    private let converter = FrameConverter()
    private let frame: UnsafeMutablePointer<AVFrame>
    private var codec: UnsafeMutablePointer<AVCodecContext>?
    private let packet: UnsafeMutablePointer<AVPacket>

    public init(layout: V4L2FrameLayout) {
        _ = ffmpegLogLevel
        self.layout = layout
        guard let frame = av_frame_alloc(), let packet = av_packet_alloc() else {
            fatalError("out of memory allocating FFmpeg frames")
        }
        self.frame = frame
        self.packet = packet
        if layout.format == .mjpeg, let decoder = avcodec_find_decoder(AV_CODEC_ID_MJPEG),
           let context = avcodec_alloc_context3(decoder) {
            context.pointee.thread_count = 1
            if avcodec_open2(context, decoder, nil) >= 0 {
                codec = context
            } else {
                var c: UnsafeMutablePointer<AVCodecContext>? = context
                avcodec_free_context(&c)
            }
        }
    }

    deinit {
        var f: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&f)
        var p: UnsafeMutablePointer<AVPacket>? = packet
        av_packet_free(&p)
        var c = codec
        avcodec_free_context(&c)
    }

    /// The frame in `bytes` (a dequeued buffer's first `bytesused` bytes), or a reason it
    /// cannot be decoded (short buffer, broken JPEG).
    public func decode(_ bytes: UnsafeRawBufferPointer, sequence: Int, timestamp: Double) -> Result<RGBFrame, DecodeFailure> {
        let converted: (width: Int, height: Int, rgb: [UInt8])?
        switch layout.format {
        case .yuyv, .nv12:
            guard let needed = layout.requiredBytes, bytes.count >= needed, let base = bytes.baseAddress else {
                return .failure(.init("buffer holds \(bytes.count) bytes, a \(layout.width)x\(layout.height) "
                    + "\(layout.format.rawValue) frame needs \(layout.requiredBytes ?? 0)"))
            }
            converted = convertRaw(UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self)))
        case .mjpeg:
            guard let codec else { return .failure(.init("this FFmpeg build has no MJPEG decoder")) }
            guard !bytes.isEmpty, av_new_packet(packet, Int32(bytes.count)) == 0 else {
                return .failure(.init("empty or oversized JPEG buffer (\(bytes.count) bytes)"))
            }
            defer { av_packet_unref(packet) }
            packet.pointee.data.update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: bytes.count)
            let sent = avcodec_send_packet(codec, packet)
            guard sent >= 0 else { return .failure(.init("JPEG rejected: \(ffmpegMessage(sent))")) }
            let received = avcodec_receive_frame(codec, frame)
            guard received >= 0 else { return .failure(.init("JPEG does not decode: \(ffmpegMessage(received))")) }
            defer { av_frame_unref(frame) }
            converted = converter.convert(frame, rotation: 0)
        }
        guard let converted else { return .failure(.init("libswscale cannot convert \(layout.format.rawValue)")) }
        return .success(RGBFrame(width: converted.width, height: converted.height, rgb: converted.rgb,
                                 index: sequence, timestamp: timestamp, sourceIndex: sequence, clamped: false))
    }

    /// Wraps the mapped buffer in an AVFrame (no copy) for libswscale.
    private func convertRaw(_ base: UnsafeMutablePointer<UInt8>) -> (width: Int, height: Int, rgb: [UInt8])? {
        frame.pointee.width = Int32(layout.width)
        frame.pointee.height = Int32(layout.height)
        frame.pointee.colorspace = layout.bt709 ? AVCOL_SPC_BT709 : AVCOL_SPC_BT470BG
        frame.pointee.color_range = layout.fullRange ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG
        let stride = Int32(layout.bytesPerLine)
        switch layout.format {
        case .yuyv:
            frame.pointee.format = AV_PIX_FMT_YUYV422.rawValue
            frame.pointee.data.0 = base
            frame.pointee.linesize.0 = stride
        case .nv12:
            frame.pointee.format = AV_PIX_FMT_NV12.rawValue
            frame.pointee.data.0 = base
            frame.pointee.data.1 = base + layout.bytesPerLine * layout.height // (H/2, W/2, 2) CbCr
            frame.pointee.linesize.0 = stride
            frame.pointee.linesize.1 = stride
        case .mjpeg:
            return nil
        }
        defer {
            frame.pointee.data.0 = nil
            frame.pointee.data.1 = nil
        }
        return converter.convert(frame, rotation: 0)
    }

    public struct DecodeFailure: Error, Sendable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}
