import Foundation
import Testing
@testable import Video

@Suite struct MP4MuxerTests {
    /// The packets of the phone clip, each once, in decode order.
    static func phonePackets() throws -> (VideoFile, [EncodedPacket]) {
        var seen: [EncodedPacket] = []
        let video = try VideoFile(path: fixture("phone_h264_rot90.mp4"), packets: { packet in
            if packet.order > seen.last?.order ?? .min { seen.append(packet) }
        })
        let frames = try video.frames(at: Array(0..<video.frameCount))
        #expect(frames.count == 30)
        return (video, seen)
    }

    /// Stream copy of a whole file: the MP4 decodes to exactly the source's frames (same
    /// packets, same decoder), upright through the copied display matrix, over the same 2 s.
    @Test func streamCopyDecodesToTheSameFrames() throws {
        let (source, packets) = try Self.phonePackets()
        #expect(packets.count == 30 && packets[0].isKeyframe)
        let stream = try #require(source.encodedStream)
        let mp4 = try MP4Muxer.mux(stream, packets: packets, limit: 1 << 20)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-mux-\(UUID().uuidString).mp4").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(mp4).write(to: URL(fileURLWithPath: path))

        let copy = try VideoFile(path: path)
        #expect(copy.codecName == "h264" && copy.rotation == 90 && copy.frameCount == 30)
        #expect(copy.width == source.width && copy.height == source.height)
        #expect(abs(copy.duration - 2) < 1e-6, "duration \(copy.duration)")
        let original = try VideoFile(path: fixture("phone_h264_rot90.mp4")).frames(at: Array(0..<30))
        let decoded = try copy.frames(at: Array(0..<30))
        for (a, b) in zip(original, decoded) { #expect(a.rgb == b.rgb, "frame \(a.index)") }
    }

    /// A stretch from a later keyframe starts at time 0; output past `limit` throws, and no
    /// packets is an error too.
    @Test func laterStretchAndLimits() throws {
        let (source, packets) = try Self.phonePackets()
        let stream = try #require(source.encodedStream)
        let tail = Array(packets.drop { !($0.isKeyframe && $0.time > 1) })
        #expect(tail.count == 10)
        let mp4 = try MP4Muxer.mux(stream, packets: tail, limit: 1 << 20)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-mux-\(UUID().uuidString).mp4").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(mp4).write(to: URL(fileURLWithPath: path))
        let copy = try VideoFile(path: path)
        #expect(copy.frameCount == 10 && abs(copy.duration - 10.0 / 15) < 1e-6)
        #expect(try copy.frames(at: [0])[0].timestamp == 0)

        #expect(throws: MuxError.self) { try MP4Muxer.mux(stream, packets: packets, limit: 1_000) }
        #expect(throws: MuxError(call: "mux", message: "no packets")) { try MP4Muxer.mux(stream, packets: [], limit: 1_000) }
    }
}
