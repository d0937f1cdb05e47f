import Foundation
import Testing
@testable import Video

/// Clip encoding (sources that are not H.264) against the frames encoded, decoded again by
/// FFmpeg from the MP4 the clip writer would write.
@Suite struct VideoEncoderTests {
    static func writeAndOpen(_ mp4: [UInt8]) throws -> (VideoFile, String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-encode-\(UUID().uuidString).mp4").path
        try Data(mp4).write(to: URL(fileURLWithPath: path))
        return (try VideoFile(path: path), path)
    }

    /// The rotated phone clip's 30 upright frames (240×320, 15 fps) encoded at their own times
    /// with a keyframe every 0.4 s (6 frames), muxed: the MP4 is H.264 (libx264, which Debian's libavcodec
    /// has) of 30 frames over the same span, a keyframe at each 0.4 s, and each decoded frame is
    /// closer to the frame it was made from than to those 3 before and after, above 30 dB PSNR
    /// (measured with FFmpeg 5.1 and x264 ultrafast at crf 20: 31.0–31.6 dB; the source is
    /// itself a small lossy H.264 clip).
    @Test func encodedClipDecodesToTheFramesGiven() throws {
        let source = try VideoFile(path: fixture("phone_h264_rot90.mp4")).frames(at: Array(0..<30))
        let encoder = try VideoEncoder(width: 240, height: 320, fps: 15, crf: 20, keyframeInterval: 0.4)
        #expect(encoder.encoderName == "libx264" && encoder.stream.codecName == "h264")
        var packets: [EncodedPacket] = []
        for frame in source {
            packets += try encoder.encode(frame, milliseconds: Int64((frame.timestamp * 1000).rounded()))
        }
        packets += try encoder.flush()
        #expect(packets.count == 30)
        let keyframes = packets.filter(\.isKeyframe).map(\.time)
        #expect(keyframes.count == 5 && zip(keyframes, [0, 0.4, 0.8, 1.2, 1.6]).allSatisfy { abs($0 - $1) < 0.04 },
                "keyframes at \(keyframes)")
        #expect(zip(packets, packets.dropFirst()).allSatisfy { $0.order < $1.order && $0.time < $1.time })

        let (copy, path) = try Self.writeAndOpen(try MP4Muxer.mux(encoder.stream, packets: packets, limit: 4 << 20))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(copy.codecName == "h264" && copy.width == 240 && copy.height == 320 && copy.frameCount == 30)
        #expect(abs(copy.duration - 2) < 1e-3, "duration \(copy.duration)")
        let decoded = try copy.frames(at: Array(0..<30))
        for (i, frame) in decoded.enumerated() {
            let psnr = frame.psnr(against: source[i])
            #expect(psnr > 30, "frame \(i): \(psnr) dB")
            for j in [i - 3, i + 3] where source.indices.contains(j) {
                #expect(frame.psnr(against: source[j]) < psnr, "frame \(i) is closer to source frame \(j)")
            }
        }
    }

    /// Odd sizes are rounded down to even (4:2:0), another size is scaled to the encoder's,
    /// and a frame not after the previous one is skipped.
    @Test func sizesAndTimes() throws {
        let frame = try VideoFile(path: fixture("phone_h264_rot90.mp4")).frames(at: [3])[0]
        let encoder = try VideoEncoder(width: 121, height: 161, fps: 10)
        #expect(encoder.width == 120 && encoder.height == 160)
        #expect(try encoder.encode(frame, milliseconds: 100).count == 1)
        #expect(try encoder.encode(frame, milliseconds: 100).isEmpty)
        #expect(try encoder.encode(frame, milliseconds: 50).isEmpty)
        #expect(try encoder.encode(frame, milliseconds: 200).count == 1)
        #expect(throws: VideoEncoderError.self) { try VideoEncoder(width: 1, height: 8, fps: 10) }
    }
}
