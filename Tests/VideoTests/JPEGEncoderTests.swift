import Foundation
import Testing
@testable import Video

/// JPEG snapshots against the frame they were made from, decoded again by FFmpeg (the image2
/// demuxer and MJPEG decoder, the path any viewer of the file takes).
@Suite struct JPEGEncoderTests {
    /// Writes `bytes` as a .jpg and decodes its one frame.
    static func decode(_ bytes: [UInt8]) throws -> RGBFrame {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-jpeg-\(UUID().uuidString).jpg").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let file = try VideoFile(path: path)
        #expect(file.codecName == "mjpeg")
        return try file.frames(at: [0])[0]
    }

    /// Frame 12 of the rotated phone clip (240×320 upright) at quality 90: a JPEG file (SOI …
    /// EOI) whose decoded pixels are above 31 dB PSNR and below a mean absolute error of 3
    /// levels against the source (measured with FFmpeg 5.1: 33.3 dB and 2.29; 4:2:0 chroma
    /// costs most of it on this small, sharp frame).
    @Test func roundTripMatchesTheSourceFrame() throws {
        let source = try VideoFile(path: fixture("phone_h264_rot90.mp4")).frames(at: [12])[0]
        let jpeg = try JPEGEncoder(quality: 90).encode(source)
        #expect(Array(jpeg.prefix(2)) == [0xFF, 0xD8] && Array(jpeg.suffix(2)) == [0xFF, 0xD9])
        let decoded = try Self.decode(jpeg)
        #expect(decoded.width == 240 && decoded.height == 320)
        let psnr = decoded.psnr(against: source)
        let meanError = zip(decoded.rgb, source.rgb).reduce(0.0) { $0 + abs(Double($1.0) - Double($1.1)) } / Double(source.rgb.count)
        #expect(psnr > 31, "PSNR \(psnr) dB")
        #expect(meanError < 3, "mean absolute error \(meanError)")
        // Another frame of the same clip is further away: the snapshot shows this frame.
        let other = try VideoFile(path: fixture("phone_h264_rot90.mp4")).frames(at: [0])[0]
        #expect(decoded.psnr(against: other) < psnr)
    }

    @Test func qualityTradesSizeForError() throws {
        let source = try VideoFile(path: fixture("phone_h264_rot90.mp4")).frames(at: [5])[0]
        let low = try JPEGEncoder(quality: 20).encode(source), high = try JPEGEncoder(quality: 95).encode(source)
        #expect(low.count < high.count)
        #expect(try Self.decode(low).psnr(against: source) < Self.decode(high).psnr(against: source))
        #expect(JPEGEncoder.quantiser(quality: 100) == 2 && JPEGEncoder.quantiser(quality: 1) == 31)
    }

    /// `maxWidth` scales down with the aspect kept; odd source sizes encode as they are.
    @Test func scalesDownAndKeepsOddSizes() throws {
        let source = try VideoFile(path: fixture("phone_h264_rot90.mp4")).frames(at: [0])[0]
        let small = try Self.decode(JPEGEncoder(quality: 80, maxWidth: 120).encode(source))
        #expect(small.width == 120 && small.height == 160)
        let odd = try VideoFile(path: fixture("odd_321x179.webm")).frames(at: [3])[0]
        let decoded = try Self.decode(JPEGEncoder(quality: 90).encode(odd))
        #expect(decoded.width == 321 && decoded.height == 179)
        #expect(decoded.psnr(against: odd) > 25) // measured 27.7 dB (frame 0 of the clip: 13.4)
    }
}
