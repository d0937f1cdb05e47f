import CFFmpeg
import CKernels

/// Decoded frames → upright packed RGB24, the way the ffmpeg CLI converts them.
///
/// libswscale with SWS_BICUBIC (the CLI's default scaler flags), the frame's own YCbCr matrix
/// (BT.601 when unspecified) and its range (full for JPEG-range sources such as MJPEG), so
/// frames match `ffmpeg -pix_fmt rgb24` output byte for byte where the CLI takes the same
/// path. The display rotation is applied afterwards in C (m2k_rgb8_rotate); for the usual
/// 4:2:0 sources the result equals the CLI's rotate-then-convert, since its chroma
/// upsampling at even sizes is the same in either orientation.
final class FrameConverter {
    private var scaler: OpaquePointer? = nil
    private var colorKey: (space: Int32, full: Bool)? = nil
    /// The swscale output: FFmpeg-allocated so rows are padded as its SIMD writers expect.
    private let rgb: UnsafeMutablePointer<AVFrame>

    init() {
        guard let frame = av_frame_alloc() else { fatalError("out of memory allocating an AVFrame") }
        rgb = frame
    }

    deinit {
        sws_freeContext(scaler)
        var f: UnsafeMutablePointer<AVFrame>? = rgb
        av_frame_free(&f)
    }

    /// (width, height, bytes) of `frame` rotated clockwise by `rotation` degrees; nil when
    /// swscale cannot convert its pixel format.
    func convert(_ frame: UnsafeMutablePointer<AVFrame>, rotation: Int) -> (width: Int, height: Int, rgb: [UInt8])? {
        let width = frame.pointee.width, height = frame.pointee.height
        let format = frame.pointee.format
        guard width > 0, height > 0, format >= 0 else { return nil }
        let source = AVPixelFormat(rawValue: format)
        let previous = scaler
        scaler = sws_getCachedContext(scaler, width, height, source, width, height,
                                      AV_PIX_FMT_RGB24, SWS_BICUBIC, nil, nil, nil)
        guard let scaler else { return nil }
        let full = frame.pointee.color_range == AVCOL_RANGE_JPEG
            || (frame.pointee.color_range == AVCOL_RANGE_UNSPECIFIED && FrameConverter.isJPEGFormat(source))
        let space = Int32(bitPattern: frame.pointee.colorspace.rawValue)
        if scaler != previous || colorKey?.space != space || colorKey?.full != full {
            m2ff_set_input_colorspace(scaler, space, full ? 1 : 0)
            colorKey = (space, full)
        }
        if rgb.pointee.width != width || rgb.pointee.height != height {
            av_frame_unref(rgb)
            rgb.pointee.width = width
            rgb.pointee.height = height
            rgb.pointee.format = AV_PIX_FMT_RGB24.rawValue
            guard av_frame_get_buffer(rgb, 0) >= 0 else { return nil }
        }
        guard m2ff_scale_frame(scaler, frame, rgb) > 0 else { return nil }

        let quarter = rotation == 90 || rotation == 270
        let outWidth = Int(quarter ? height : width), outHeight = Int(quarter ? width : height)
        let count = outWidth * outHeight * 3
        let plane = m2ff_frame_plane(rgb, 0)
        let stride = Int(m2ff_frame_linesize(rgb, 0))
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            m2k_rgb8_rotate(plane, stride, width, height, Int32(rotation), buffer.baseAddress, outWidth * 3)
            initialized = count
        }
        return (outWidth, outHeight, bytes)
    }

    private static func isJPEGFormat(_ format: AVPixelFormat) -> Bool {
        [AV_PIX_FMT_YUVJ420P, AV_PIX_FMT_YUVJ422P, AV_PIX_FMT_YUVJ444P, AV_PIX_FMT_YUVJ440P,
         AV_PIX_FMT_YUVJ411P].contains(format)
    }
}
