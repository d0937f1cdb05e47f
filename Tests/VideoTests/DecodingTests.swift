import Foundation
import Testing
@testable import Video

/// Decoded frames against the ffmpeg CLI (`-vf select=eq(n\,N) -pix_fmt rgb24`, autorotated),
/// and the metadata against ffprobe.
@Suite struct DecodingTests {
    static let videos = VideoReference.shared.videos.keys.sorted()

    @Test(arguments: videos)
    func metadataMatchesFFprobe(name: String) throws {
        let reference = try #require(VideoReference.shared.videos[name])
        let video = try VideoFile(path: fixture(name))
        #expect(video.width == reference.width && video.height == reference.height,
                "\(name): \(video.width)x\(video.height), ffprobe says \(reference.width)x\(reference.height)")
        #expect(video.rotation == reference.rotation, "\(name): rotation \(video.rotation)")
        let parts = reference.avgFrameRate.split(separator: "/").compactMap { Double($0) }
        #expect(abs(video.fps - parts[0] / parts[1]) < 1e-9, "\(name): fps \(video.fps)")
        if let header = reference.headerFrames {
            #expect(video.frameCount == header && !video.frameCountIsEstimate, "\(name): \(video.frameCount) frames")
        } else {
            #expect(video.frameCountIsEstimate, "\(name): count should be marked an estimate")
        }
    }

    /// Reading past the end finds where the stream really ends: ffprobe's decoded count, in
    /// display indices (for the variable-rate file, the index of its last frame's time + 1).
    @Test(arguments: videos)
    func endOfStreamIsFound(name: String) throws {
        let reference = try #require(VideoReference.shared.videos[name])
        let video = try VideoFile(path: fixture(name))
        let frames = try video.frames(at: [video.frameCount + 10])
        #expect(frames[0].clamped)
        let lastIndex = Int((reference.timestamps.last! * video.fps).rounded())
        #expect(video.decodableFrameCount == lastIndex + 1, "\(name): \(String(describing: video.decodableFrameCount))")
        #expect(frames[0].sourceIndex == lastIndex)
        if reference.timestamps.count == lastIndex + 1 {
            #expect(abs(video.frameCount - reference.decodedFrames) <= 1,
                    "\(name): frame count \(video.frameCount), \(reference.decodedFrames) decode")
        }
    }

    @Test(arguments: videos)
    func framesMatchTheCLI(name: String) throws {
        let reference = try #require(VideoReference.shared.videos[name])
        let video = try VideoFile(path: fixture(name))
        // Display indices of the reference frames (decode numbers n): equal for constant rate.
        let indices = reference.frames.map { Int((reference.timestamps[$0.index] * video.fps).rounded()) }
        // Asked backwards and with a repeat: the decoder must sort, seek and reuse.
        let asked = indices.reversed() + [indices[0]]
        let frames = try video.frames(at: asked)
        #expect(frames.map(\.index) == asked)
        for (frame, index) in zip(frames, asked) {
            let expected = reference.frames[indices.firstIndex(of: index)!]
            try compare(frame, expected, name: name, block: VideoReference.shared.block,
                        cropSize: VideoReference.shared.crop)
            #expect(!frame.clamped)
            #expect(abs(frame.timestamp - reference.timestamps[expected.index]) < 1e-3,
                    "\(name) frame \(index): timestamp \(frame.timestamp)")
        }
    }

    func compare(_ frame: RGBFrame, _ expected: VideoReference.Frame, name: String, block: Int,
                 cropSize: Int) throws {
        let label = "\(name) frame \(expected.index)"
        let reference = try #require(VideoReference.shared.videos[name])
        #expect(frame.width == reference.width && frame.height == reference.height, "\(label): size")
        if fnv1a64(frame.rgb) == expected.fnv1a64 {
            print("[video] \(label): identical to the ffmpeg CLI")
            return
        }
        let stem = "frames/\(name).\(expected.index)"
        let cropRef = try fixtureBytes(stem + ".crop.rgb")
        let ours = crop(frame, x: expected.cropX, y: expected.cropY, size: cropSize)
        let cropDiff = zip(ours, cropRef).map { abs(Int($0) - Int($1)) }.max() ?? 0
        let sums = blockSums(frame, block: block)
        let sumsRef = littleEndianUInt16(try fixtureBytes(stem + ".blocks.u16")).map(Int.init)
        #expect(sums.count == sumsRef.count, "\(label): block grid")
        let meanDiff = zip(sums, sumsRef).map { Double(abs($0 - $1)) / Double(block * block) }.max() ?? 0
        print("[video] \(label): differs from the CLI, crop max |diff| \(cropDiff), block-mean max |diff| \(meanDiff)")
        #expect(cropDiff <= 2 && meanDiff <= 1, "\(label): crop max |diff| \(cropDiff) (≤ 2), block mean \(meanDiff) (≤ 1)")
    }

    /// Every frame decoded in one forward pass equals the same frame reached by seeking.
    @Test func randomAccessEqualsSequentialDecoding() throws {
        let name = "phone_h264_rot90.mp4"
        let sequential = try VideoFile(path: fixture(name)).frames(at: Array(0..<30))
        #expect(sequential.map(\.sourceIndex) == Array(0..<30))
        #expect(Set(sequential.map { fnv1a64($0.rgb) }).count == 30, "frames should all differ")
        let video = try VideoFile(path: fixture(name))
        for index in [29, 3, 17, 17, 0, 10, 9, 11, 28, 2] {
            let frame = try video.frames(at: [index])[0]
            #expect(frame.sourceIndex == index)
            #expect(frame.rgb == sequential[index].rgb, "frame \(index) after seeking differs")
        }
    }

    /// Seeking pays: reaching frame 25 of a GOP-10 file decodes from keyframe 20, not from 0;
    /// frames a few apart are reached by decoding on, without a seek.
    @Test func seeksOnlyWhenAKeyframeIsCloser() throws {
        let video = try VideoFile(path: fixture("phone_h264_rot90.mp4"))
        _ = try video.frames(at: [25])
        #expect(video.seeks == 1 && video.framesDecoded < 12, "\(video.framesDecoded) frames decoded")
        let before = video.framesDecoded
        _ = try video.frames(at: [26, 28])
        #expect(video.seeks == 1 && video.framesDecoded - before <= 4)
        // A raw stream has no timestamps to seek by: going back starts over.
        let raw = try VideoFile(path: fixture("raw_stream.h264"))
        #expect(raw.frameCount == 20 && raw.frameCountIsEstimate)
        let late = try raw.frames(at: [17])[0]
        let early = try raw.frames(at: [3])[0]
        #expect(late.sourceIndex == 17 && early.sourceIndex == 3)
    }

    @Test func rotatedPhoneVideoIsUpright() throws {
        let video = try VideoFile(path: fixture("phone_h264_rot90.mp4"))
        #expect(video.rotation == 90)
        #expect(video.width == 240 && video.height == 320)
        let frame = try video.frames(at: [5])[0]
        #expect(frame.width == 240 && frame.height == 320 && frame.rgb.count == 240 * 320 * 3)
    }

    /// The variable-rate file: index i is the frame on screen at i / fps.
    @Test func variableFrameRateMapsIndicesToTimes() throws {
        let reference = try #require(VideoReference.shared.videos["vfr.mkv"])
        let video = try VideoFile(path: fixture("vfr.mkv"))
        let indices = Array(0..<40)
        let frames = try video.frames(at: indices)
        for (i, frame) in zip(indices, frames) {
            let time = Double(i) / video.fps + 0.5 / video.fps
            let expected = reference.timestamps.last(where: { $0 <= time + 1e-6 })!
            #expect(abs(frame.timestamp - expected) < 1e-3, "index \(i): frame at \(frame.timestamp) s, expected \(expected) s")
        }
    }

    @Test func shortClipDeliversRepeatsOfItsLastFrame() throws {
        let video = try VideoFile(path: fixture("short_3frames.mp4"))
        #expect(video.frameCount == 3)
        let sample = FrameSampler.segments(frameCount: video.frameCount, frames: 8)
        #expect(sample.indices == [0, 0, 0, 1, 1, 2, 2, 2] && sample.repeated == 5)
        let frames = try video.frames(at: sample.indices)
        #expect(frames.count == 8 && frames.allSatisfy { !$0.clamped })
        #expect(frames[0].rgb == frames[2].rgb && frames[0].rgb != frames[3].rgb)
    }
}
