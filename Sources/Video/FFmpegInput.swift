import CFFmpeg
import Glibc

/// FFmpeg's own log lines go to stderr and would interleave with ours; every failure we care
/// about surfaces as a `VideoError` instead. Silenced once per process; `M2CLIP_FFMPEG_LOG`
/// (error, warning, info, debug) turns them back on for debugging.
let ffmpegLogLevel: Void = {
    let level: Int32
    switch getenv("M2CLIP_FFMPEG_LOG").map({ String(cString: $0) }) {
    case "error": level = AV_LOG_ERROR
    case "warning": level = AV_LOG_WARNING
    case "info": level = AV_LOG_INFO
    case "debug": level = AV_LOG_DEBUG
    default: level = AV_LOG_QUIET
    }
    av_log_set_level(level)
}()

/// FFmpeg's message for an AVERROR code.
func ffmpegMessage(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    return buffer.withUnsafeMutableBufferPointer {
        String(cString: m2ff_error_string(code, $0.baseAddress, $0.count))
    }
}

/// Where opening an input failed, for the caller to explain FFmpeg's error code.
enum OpenStep {
    /// avformat_open_input: reaching and recognising the input.
    case open
    /// avformat_find_stream_info: reading ahead to learn the streams' codecs and rates.
    case probe
}

/// One open video stream: the demuxer (libavformat) and the decoder (libavcodec, one thread:
/// the engine owns the CPU budget). Packets the decoder rejects are skipped and counted.
final class FFmpegInput {
    /// The file path, or the stream URL without credentials: what errors name.
    let path: String
    let format: UnsafeMutablePointer<AVFormatContext>
    let codec: UnsafeMutablePointer<AVCodecContext>
    let streamIndex: Int32
    private let packet: UnsafeMutablePointer<AVPacket>
    /// libavformat calls the interrupt callback until avformat_close_input returns, so the
    /// state it points to lives as long as the context.
    private let interrupt: StreamInterrupt?
    private var draining = false
    private(set) var atEnd = false
    /// Packets the decoder refused (corrupt data), and decode calls that failed.
    private(set) var rejectedPackets = 0
    private var consecutiveReadErrors = 0
    /// Why reading stopped: AVERROR_EOF at a clean end, else the I/O error (the AVIOContext's
    /// error when the demuxer reported it as an end). nil while packets still come.
    private(set) var endCode: Int32?
    /// Sees every packet of the video stream as it is read, before the decoder does (a clip
    /// recorder keeps references to them).
    var packetTap: ((UnsafePointer<AVPacket>) -> Void)?

    var stream: UnsafeMutablePointer<AVStream> { format.pointee.streams[Int(streamIndex)]! }

    /// Average frame rate (avg_frame_rate; r_frame_rate, then 25, when the stream gives none).
    var frameRate: Double {
        func rate(_ r: AVRational) -> Double? {
            guard r.num > 0, r.den > 0 else { return nil }
            let value = Double(r.num) / Double(r.den)
            return value <= 1000 ? value : nil
        }
        return rate(stream.pointee.avg_frame_rate) ?? rate(stream.pointee.r_frame_rate) ?? 25
    }

    /// A local file; `path` is checked with stat() first so a missing or empty file gets a plain
    /// answer rather than FFmpeg's.
    convenience init(path: String) throws {
        _ = ffmpegLogLevel
        var info = stat()
        if stat(path, &info) != 0 {
            let code = errno
            throw VideoError(path: path, kind: code == ENOENT || code == ENOTDIR ? .noSuchFile : .unreadable,
                             detail: code == ENOENT ? "" : String(cString: strerror(code)))
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            throw VideoError(path: path, kind: .noSuchFile, detail: "it is a directory")
        }
        if info.st_size == 0 { throw VideoError(path: path, kind: .notMediaFile, detail: "empty file") }
        try self.init(url: path, name: path, options: [], interrupt: nil) { step, code in
            switch step {
            case .open: return FFmpegInput.openFailure(path: path, code: code)
            case .probe: return VideoError(path: path, kind: .corrupt, detail: ffmpegMessage(code))
            }
        }
    }

    /// Any input libavformat opens: a path, or a URL (rtsp://, http://, udp://, ...). With an
    /// `interrupt`, every blocking call of this input polls it (AVFormatContext
    /// .interrupt_callback), so the caller bounds each one by arming its deadline. `options` go
    /// to the protocol and demuxer (avformat_open_input's AVDictionary), `name` is what errors
    /// show, and `explain` turns a failed step's AVERROR into the error to throw.
    init(url: String, name: String, options: [(key: String, value: String)], interrupt: StreamInterrupt?,
         explain: (OpenStep, Int32) -> VideoError) throws {
        _ = ffmpegLogLevel
        path = name
        self.interrupt = interrupt
        // The callback must be in place before avformat_open_input: connecting is the call most
        // likely to hang.
        guard let allocated = avformat_alloc_context() else {
            throw VideoError(path: name, kind: .corrupt, detail: "out of memory for the demuxer")
        }
        if let interrupt { allocated.pointee.interrupt_callback = interrupt.callback }
        var dictionary: OpaquePointer? = nil
        defer { av_dict_free(&dictionary) }
        for option in options { av_dict_set(&dictionary, option.key, option.value, 0) }

        // On failure avformat_open_input frees the context it was given.
        var context: UnsafeMutablePointer<AVFormatContext>? = allocated
        let opened = avformat_open_input(&context, url, nil, &dictionary)
        guard opened >= 0, let format = context else { throw explain(.open, opened) }
        var owned = true
        defer { if owned { var c: UnsafeMutablePointer<AVFormatContext>? = format; avformat_close_input(&c) } }

        let found = avformat_find_stream_info(format, nil)
        if found < 0 { throw explain(.probe, found) }
        let index = try FFmpegInput.videoStream(format, path: name)
        let stream = format.pointee.streams[Int(index)]!
        for i in 0..<Int(format.pointee.nb_streams) where i != Int(index) {
            format.pointee.streams[i]!.pointee.discard = AVDISCARD_ALL
        }

        let parameters = stream.pointee.codecpar!
        guard let decoder = avcodec_find_decoder(parameters.pointee.codec_id) else {
            throw VideoError(path: name, kind: .unsupportedCodec(FFmpegInput.codecLabel(parameters)),
                             detail: "no decoder in this FFmpeg build")
        }
        guard let codec = avcodec_alloc_context3(decoder) else {
            throw VideoError(path: name, kind: .corrupt, detail: "out of memory for the decoder")
        }
        var copied = avcodec_parameters_to_context(codec, parameters)
        codec.pointee.thread_count = 1
        codec.pointee.pkt_timebase = stream.pointee.time_base
        if copied >= 0 { copied = avcodec_open2(codec, decoder, nil) }
        var unopened: UnsafeMutablePointer<AVCodecContext>? = codec
        if copied < 0 {
            avcodec_free_context(&unopened)
            throw VideoError(path: name, kind: .unsupportedCodec(FFmpegInput.codecLabel(parameters)),
                             detail: "decoder refused the stream: \(ffmpegMessage(copied))")
        }
        guard let packet = av_packet_alloc() else {
            avcodec_free_context(&unopened)
            throw VideoError(path: name, kind: .corrupt, detail: "out of memory for a packet")
        }
        owned = false
        self.format = format
        self.codec = codec
        self.streamIndex = index
        self.packet = packet
    }

    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = packet
        av_packet_free(&p)
        var c: UnsafeMutablePointer<AVCodecContext>? = codec
        avcodec_free_context(&c)
        var f: UnsafeMutablePointer<AVFormatContext>? = format
        avformat_close_input(&f)
    }

    /// Why avformat_open_input failed: a recognised container that will not open is damaged;
    /// bytes that no demuxer recognises by content are not a media file at all.
    private static func openFailure(path: String, code: Int32) -> VideoError {
        if code == m2ff_averror(ENOENT) { return VideoError(path: path, kind: .noSuchFile) }
        if code == m2ff_averror(EACCES) || code == m2ff_averror(EPERM) || code == m2ff_averror(EISDIR) {
            return VideoError(path: path, kind: .unreadable, detail: ffmpegMessage(code))
        }
        if let container = probeContent(path) {
            return VideoError(path: path, kind: .corrupt, detail: "\(container) container: \(ffmpegMessage(code))")
        }
        return VideoError(path: path, kind: .notMediaFile, detail: ffmpegMessage(code))
    }

    /// The demuxer FFmpeg's content probe (file name ignored) finds in the first 4 KiB with at
    /// least AVPROBE_SCORE_RETRY confidence, if any.
    private static func probeContent(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        let size = 4096
        var bytes = [UInt8](repeating: 0, count: size + Int(AVPROBE_PADDING_SIZE))
        let read = fread(&bytes, 1, size, file)
        guard read > 0 else { return nil }
        var score: Int32 = 0
        guard let format = m2ff_probe_content(bytes, Int32(read), &score),
              score >= AVPROBE_SCORE_RETRY else { return nil }
        return String(cString: format.pointee.name)
    }

    /// The best video stream that is a moving picture (not an attached cover image).
    private static func videoStream(_ format: UnsafeMutablePointer<AVFormatContext>, path: String) throws -> Int32 {
        func isMovingVideo(_ i: Int) -> Bool {
            let s = format.pointee.streams[i]!.pointee
            return s.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO
                && s.disposition & AV_DISPOSITION_ATTACHED_PIC == 0
        }
        let best = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        if best >= 0 && isMovingVideo(Int(best)) { return best }
        let count = Int(format.pointee.nb_streams)
        if let other = (0..<count).first(where: isMovingVideo) { return Int32(other) }
        var kinds: [String] = []
        for i in 0..<count {
            let s = format.pointee.streams[i]!.pointee
            let type = s.codecpar.pointee.codec_type
            if type == AVMEDIA_TYPE_VIDEO {
                kinds.append("cover image")
            } else if let name = av_get_media_type_string(type) {
                kinds.append(String(cString: name))
            }
        }
        throw VideoError(path: path, kind: .noVideoStream,
                         detail: kinds.isEmpty ? "no streams" : "streams: " + kinds.joined(separator: ", "))
    }

    /// "h264", or the fourcc when FFmpeg does not know the codec ("fourcc QQQQ").
    private static func codecLabel(_ parameters: UnsafeMutablePointer<AVCodecParameters>) -> String {
        let id = parameters.pointee.codec_id
        if id != AV_CODEC_ID_NONE { return String(cString: avcodec_get_name(id)) }
        var buffer = [CChar](repeating: 0, count: 32)
        let tag = buffer.withUnsafeMutableBufferPointer {
            String(cString: m2ff_fourcc_string(parameters.pointee.codec_tag, $0.baseAddress, $0.count))
        }
        return "fourcc \(tag)"
    }

    /// The next frame in display order (avcodec_receive_frame), reading and sending packets as
    /// the decoder asks; false at the end of the stream. Packets the decoder rejects
    /// (avcodec_send_packet < 0) are skipped, so a damaged stretch costs frames, not the file.
    func decode(into frame: UnsafeMutablePointer<AVFrame>) -> Bool {
        var failures = 0
        while !atEnd {
            let received = avcodec_receive_frame(codec, frame)
            if received == 0 { return true }
            if received == m2ff_averror_eof() { atEnd = true; break }
            if received != m2ff_averror_eagain() {
                rejectedPackets += 1
                failures += 1
                if failures > 64 { atEnd = true; break } // a decoder that only fails: give up
                if draining { continue }
            }
            if draining { atEnd = true; break }
            sendNextPacket()
        }
        return false
    }

    /// av_read_frame until a packet of our stream, then avcodec_send_packet; at the end of the
    /// input, the drain signal (a NULL packet).
    private func sendNextPacket() {
        while true {
            let read = av_read_frame(format, packet)
            if read == m2ff_averror_eagain(), let interrupt, !interrupt.shouldAbort() {
                // A network demuxer with nothing yet (RTSP over UDP): wait for more, until the
                // caller's read deadline.
                usleep(10_000)
                continue
            }
            if read < 0 {
                consecutiveReadErrors += 1
                let endOfInput = read == m2ff_averror_eof()
                    || (format.pointee.pb.map { avio_feof($0) != 0 } ?? true)
                if endOfInput || consecutiveReadErrors > 32 {
                    let ioError = format.pointee.pb.map { $0.pointee.error } ?? 0
                    endCode = read == m2ff_averror_eof() && ioError < 0 ? ioError : read
                    avcodec_send_packet(codec, nil)
                    draining = true
                    return
                }
                continue // a damaged packet the demuxer could not parse: it resyncs on the next
            }
            consecutiveReadErrors = 0
            defer { av_packet_unref(packet) }
            if packet.pointee.stream_index != streamIndex { continue }
            packetTap?(packet)
            let sent = avcodec_send_packet(codec, packet)
            if sent < 0 && sent != m2ff_averror_eagain() {
                rejectedPackets += 1
                continue
            }
            return
        }
    }

    /// av_seek_frame to the keyframe at or before `ticks` (stream time base), then
    /// avcodec_flush_buffers. False when the demuxer cannot seek.
    func seek(toTicks ticks: Int64) -> Bool {
        var result = av_seek_frame(format, streamIndex, ticks, AVSEEK_FLAG_BACKWARD)
        if result < 0 {
            result = avformat_seek_file(format, streamIndex, Int64.min, ticks, ticks, 0)
        }
        guard result >= 0 else { return false }
        avcodec_flush_buffers(codec)
        draining = false
        atEnd = false
        endCode = nil
        consecutiveReadErrors = 0
        return true
    }

    /// The timestamp of the last indexed keyframe at or before `ticks`, when the demuxer has an
    /// index (MP4, AVI, Matroska with cues); nil otherwise.
    func keyframe(atOrBefore ticks: Int64) -> Int64? {
        guard avformat_index_get_entries_count(stream) > 0,
              let entry = avformat_index_get_entry_from_timestamp(stream, ticks, AVSEEK_FLAG_BACKWARD)
        else { return nil }
        return entry.pointee.timestamp
    }

    /// Packets of the video stream from the current position to the end, without decoding.
    func countPackets() -> Int {
        var count = 0
        var errors = 0
        while true {
            let read = av_read_frame(format, packet)
            if read < 0 {
                errors += 1
                if read == m2ff_averror_eof() || errors > 32
                    || (format.pointee.pb.map { avio_feof($0) != 0 } ?? true) { break }
                continue
            }
            if packet.pointee.stream_index == streamIndex { count += 1 }
            av_packet_unref(packet)
        }
        return count
    }
}
