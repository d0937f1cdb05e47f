import CFFmpeg

/// One compressed packet of a video stream, as the demuxer gave it: a reference to FFmpeg's
/// refcounted buffer (av_packet_ref), not a copy of the bytes. Immutable once made, so it may
/// travel between threads.
public final class EncodedPacket: @unchecked Sendable {
    let packet: UnsafeMutablePointer<AVPacket>
    /// Presentation time in seconds on the stream's clock (pts × time base).
    public let time: Double
    /// Decode order: dts, or pts when the packet has none (stream time-base ticks).
    public let order: Int64
    public let isKeyframe: Bool
    /// Payload bytes.
    public let bytes: Int

    /// nil for a packet without a pts (it could not be placed in a clip) or when out of memory.
    init?(referencing source: UnsafePointer<AVPacket>, timeBase: AVRational) {
        let pts = source.pointee.pts
        guard pts != m2ff_nopts_value(), let packet = av_packet_alloc() else { return nil }
        guard av_packet_ref(packet, source) >= 0 else {
            var p: UnsafeMutablePointer<AVPacket>? = packet
            av_packet_free(&p)
            return nil
        }
        self.packet = packet
        time = Double(pts) * Double(timeBase.num) / Double(max(timeBase.den, 1))
        order = source.pointee.dts != m2ff_nopts_value() ? source.pointee.dts : pts
        isKeyframe = m2ff_packet_is_keyframe(source) != 0
        bytes = Int(source.pointee.size)
    }

    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = packet
        av_packet_free(&p)
    }
}

/// What a muxer needs to write packets of a stream without decoding them: a copy of the
/// stream's codec parameters (avcodec_parameters_copy: codec, size, extradata with the
/// H.264 SPS/PPS), its time base and display matrix.
public final class EncodedStreamParameters: @unchecked Sendable {
    let parameters: UnsafeMutablePointer<AVCodecParameters>
    let timeBase: AVRational
    let displayMatrix: [UInt8]
    /// FFmpeg's codec name: "h264", "vp8", ...
    public let codecName: String

    init?(stream: UnsafeMutablePointer<AVStream>) {
        guard let parameters = avcodec_parameters_alloc() else { return nil }
        guard avcodec_parameters_copy(parameters, stream.pointee.codecpar) >= 0 else {
            var p: UnsafeMutablePointer<AVCodecParameters>? = parameters
            avcodec_parameters_free(&p)
            return nil
        }
        self.parameters = parameters
        timeBase = stream.pointee.time_base
        var size = 0
        if let matrix = m2ff_display_matrix(stream, &size), size > 0 {
            displayMatrix = Array(UnsafeBufferPointer(start: matrix, count: size))
        } else {
            displayMatrix = []
        }
        codecName = String(cString: avcodec_get_name(parameters.pointee.codec_id))
    }

    /// The parameters of an opened encoder's stream (avcodec_parameters_from_context), its
    /// time base the encoder's; no display matrix (encoded frames are upright).
    init?(context: UnsafeMutablePointer<AVCodecContext>) {
        guard let parameters = avcodec_parameters_alloc() else { return nil }
        guard avcodec_parameters_from_context(parameters, context) >= 0 else {
            var p: UnsafeMutablePointer<AVCodecParameters>? = parameters
            avcodec_parameters_free(&p)
            return nil
        }
        self.parameters = parameters
        timeBase = context.pointee.time_base
        displayMatrix = []
        codecName = String(cString: avcodec_get_name(parameters.pointee.codec_id))
    }

    deinit {
        var p: UnsafeMutablePointer<AVCodecParameters>? = parameters
        avcodec_parameters_free(&p)
    }
}

/// A mux that failed: the libavformat call and FFmpeg's message.
public struct MuxError: Error, CustomStringConvertible, Equatable {
    public var call: String
    public var message: String
    public var description: String { "MP4 mux: \(call): \(message)" }
}

/// Packets into an MP4 file in memory, by stream copy (no decoding or encoding).
public enum MP4Muxer {
    /// The MP4 bytes of `packets` (decode order, the first a keyframe) of `stream`: one video
    /// track with the stream's codec parameters and display matrix, timestamps moved so the
    /// first packet decodes at 0 (av_packet_rescale_ts into the muxer's time base). At most
    /// `limit` bytes are produced; a larger file throws.
    public static func mux(_ stream: EncodedStreamParameters, packets: [EncodedPacket], limit: Int) throws -> [UInt8] {
        guard let first = packets.first else { throw MuxError(call: "mux", message: "no packets") }
        func check(_ call: String, _ code: Int32) throws {
            if code < 0 { throw MuxError(call: call, message: ffmpegMessage(code)) }
        }
        _ = ffmpegLogLevel
        var memory: UnsafeMutablePointer<m2ff_membuf>? = nil
        var io = m2ff_membuf_open(Int64(limit), &memory)
        guard io != nil else { throw MuxError(call: "avio_alloc_context", message: "out of memory") }
        defer { m2ff_membuf_close(&io, &memory) }

        var allocated: UnsafeMutablePointer<AVFormatContext>? = nil
        try check("avformat_alloc_output_context2", avformat_alloc_output_context2(&allocated, nil, "mp4", nil))
        guard let format = allocated else { throw MuxError(call: "avformat_alloc_output_context2", message: "no context") }
        defer {
            format.pointee.pb = nil // ours, freed by m2ff_membuf_close
            avformat_free_context(format)
        }
        format.pointee.pb = io
        guard let out = avformat_new_stream(format, nil) else {
            throw MuxError(call: "avformat_new_stream", message: "out of memory")
        }
        try check("avcodec_parameters_copy", avcodec_parameters_copy(out.pointee.codecpar, stream.parameters))
        out.pointee.codecpar.pointee.codec_tag = 0 // the MP4 muxer picks its own (avc1)
        out.pointee.time_base = stream.timeBase
        if !stream.displayMatrix.isEmpty {
            try check("av_stream_new_side_data", m2ff_set_display_matrix(out, stream.displayMatrix, stream.displayMatrix.count))
        }
        try check("avformat_write_header", avformat_write_header(format, nil))

        let origin = first.order
        guard let packet = av_packet_alloc() else { throw MuxError(call: "av_packet_alloc", message: "out of memory") }
        defer {
            var p: UnsafeMutablePointer<AVPacket>? = packet
            av_packet_free(&p)
        }
        for source in packets {
            try check("av_packet_ref", av_packet_ref(packet, source.packet))
            if packet.pointee.pts != m2ff_nopts_value() { packet.pointee.pts -= origin }
            if packet.pointee.dts != m2ff_nopts_value() { packet.pointee.dts -= origin }
            av_packet_rescale_ts(packet, stream.timeBase, out.pointee.time_base)
            packet.pointee.stream_index = 0
            packet.pointee.pos = -1
            // Takes the reference (and unrefs `packet`) whether it succeeds or not.
            try check("av_interleaved_write_frame", av_interleaved_write_frame(format, packet))
        }
        try check("av_write_trailer", av_write_trailer(format))
        avio_flush(io)
        if let error = io?.pointee.error, error < 0 { throw MuxError(call: "avio_write", message: ffmpegMessage(error)) }
        guard let buffer = memory?.pointee, let data = buffer.data else { throw MuxError(call: "mux", message: "no output") }
        return Array(UnsafeBufferPointer(start: data, count: Int(buffer.size)))
    }
}
