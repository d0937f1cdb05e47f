import CFFmpeg

/// Packed RGB frames into an FFmpeg frame of another size and pixel format (libswscale), for
/// the encoders: the destination frame's own width, height and format say what to make.
/// Not thread-safe: one per encoder.
final class RGBScaler {
    private var context: OpaquePointer? = nil
    /// SWS_BICUBIC, SWS_BILINEAR, ...
    let flags: Int32

    init(flags: Int32) { self.flags = flags }

    deinit { sws_freeContext(context) }

    /// Converts `frame` into `destination` (allocated, writable); false when swscale cannot.
    func scale(_ frame: RGBFrame, into destination: UnsafeMutablePointer<AVFrame>) -> Bool {
        context = sws_getCachedContext(context, Int32(frame.width), Int32(frame.height), AV_PIX_FMT_RGB24,
                                       destination.pointee.width, destination.pointee.height,
                                       AVPixelFormat(rawValue: destination.pointee.format), flags, nil, nil, nil)
        var owned = av_frame_alloc()
        defer { av_frame_free(&owned) }
        guard let context, let source = owned else { return false }
        return frame.rgb.withUnsafeBufferPointer { bytes -> Bool in
            source.pointee.width = Int32(frame.width)
            source.pointee.height = Int32(frame.height)
            source.pointee.format = AV_PIX_FMT_RGB24.rawValue
            // Borrowed for the one sws_scale call; nothing frees them.
            source.pointee.data.0 = UnsafeMutablePointer(mutating: bytes.baseAddress)
            source.pointee.linesize.0 = Int32(frame.width * 3)
            defer { source.pointee.data.0 = nil }
            return m2ff_scale_frame(context, source, destination) > 0
        }
    }
}
