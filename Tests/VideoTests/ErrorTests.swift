import Foundation
import Ops
import Testing
@testable import Video

/// Bad input never crashes: each failure is one line naming the file (and the frame).
@Suite struct ErrorTests {
    func expectOneLine(_ message: String?, naming path: String, saying words: String...,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        guard let message else {
            Issue.record("\(path): expected an error", sourceLocation: sourceLocation)
            return
        }
        #expect(!message.contains("\n"), "not one line: \(message)", sourceLocation: sourceLocation)
        #expect(message.contains(path), "does not name the file: \(message)", sourceLocation: sourceLocation)
        for word in words {
            #expect(message.contains(word), "does not say \"\(word)\": \(message)", sourceLocation: sourceLocation)
        }
    }

    @Test func missingFile() {
        let path = fixture("no-such-clip.mp4")
        let message = errorMessage { _ = try VideoFile(path: path) }
        expectOneLine(message, naming: path, saying: "no such file")
    }

    @Test func directory() {
        let path = videoFixtures.path
        expectOneLine(errorMessage { _ = try VideoFile(path: path) }, naming: path, saying: "directory")
    }

    @Test func textFileNamedMP4() {
        let path = fixture("not_a_video.mp4")
        expectOneLine(errorMessage { _ = try VideoFile(path: path) }, naming: path, saying: "not a video")
    }

    @Test func emptyFile() throws {
        let dir = try TemporaryDirectory()
        let path = try dir.write([], to: "empty.mp4")
        expectOneLine(errorMessage { _ = try VideoFile(path: path) }, naming: path, saying: "not a video", "empty")
    }

    /// A WAV file, written by hand: a media file without a video stream.
    @Test func audioOnlyFile() throws {
        let samples = 800
        var wav: [UInt8] = Array("RIFF".utf8)
        func u32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        func u16(_ v: Int) -> [UInt8] { (0..<2).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        wav += u32(36 + samples * 2) + Array("WAVEfmt ".utf8) + u32(16) + u16(1) + u16(1)
        wav += u32(8000) + u32(16000) + u16(2) + u16(16) + Array("data".utf8) + u32(samples * 2)
        wav += (0..<samples).flatMap { u16(Int(3000 * sin(Double($0) / 5)) & 0xFFFF) }
        let dir = try TemporaryDirectory()
        let path = try dir.write(wav, to: "tone.wav")
        expectOneLine(errorMessage { _ = try VideoFile(path: path) }, naming: path, saying: "no video stream", "audio")
    }

    /// The AVI's fourcc patched to one FFmpeg has no decoder for.
    @Test func unsupportedCodec() throws {
        var bytes = try fixtureBytes("mpeg4_part2.avi")
        let from = Array("FMP4".utf8), to = Array("QQQQ".utf8)
        var patched = 0
        for i in 0..<(bytes.count - 4) where Array(bytes[i..<(i + 4)]) == from {
            bytes.replaceSubrange(i..<(i + 4), with: to)
            patched += 1
        }
        #expect(patched == 2)
        let dir = try TemporaryDirectory()
        let path = try dir.write(bytes, to: "unknown.avi")
        expectOneLine(errorMessage { _ = try VideoFile(path: path) }, naming: path, saying: "unsupported video codec", "QQQQ")
    }

    @Test func negativeIndex() throws {
        let path = fixture("h264.mov")
        let video = try VideoFile(path: path)
        expectOneLine(errorMessage { _ = try video.frames(at: [3, -1]) }, naming: path, saying: "-1")
    }

    @Test func absurdIndexClampsToTheLastFrame() throws {
        let video = try VideoFile(path: fixture("h264.mov"))
        let frames = try video.frames(at: [Int.max / 2, Int.max])
        #expect(frames.allSatisfy { $0.clamped && $0.sourceIndex == 29 })
    }

    /// The fixture keeps its index (moov) first, so the header promises 30 frames while only
    /// the first ~60 % of the data is there: frames past the cut clamp to the last good one.
    @Test func truncatedMP4DecodesWhatItCan() throws {
        let video = try VideoFile(path: fixture("truncated.mp4"))
        let intact = try VideoFile(path: fixture("phone_h264_rot90.mp4"))
        #expect(video.frameCount == 30)
        let frames = try video.frames(at: [2, 25, 29])
        #expect(frames[0].rgb == (try intact.frames(at: [2])[0].rgb))
        #expect(frames[1].clamped && frames[2].clamped)
        let decodable = try #require(video.decodableFrameCount)
        #expect(decodable > 5 && decodable < 30, "\(decodable) frames decode")
        #expect(frames[1].sourceIndex == decodable - 1)
        print("[video] truncated.mp4: \(decodable) of 30 frames decode, \(video.rejectedPackets) packets rejected")
    }

    /// A file cut before its index (MOV with moov last) cannot be opened: a clear error.
    @Test func truncatedMOVWithoutIndex() throws {
        let bytes = try fixtureBytes("h264.mov")
        let dir = try TemporaryDirectory()
        let path = try dir.write(Array(bytes.prefix(bytes.count * 6 / 10)), to: "cut.mov")
        expectOneLine(errorMessage { _ = try VideoFile(path: path) }, naming: path, saying: "truncated or corrupt")
    }

    @Test func corruptMP4DoesNotCrash() throws {
        let path = fixture("corrupt.mp4")
        do {
            let video = try VideoFile(path: path)
            let frames = try video.frames(at: Array(0..<30))
            #expect(frames.count == 30)
            print("[video] corrupt.mp4: 30 frames delivered, \(frames.filter(\.clamped).count) clamped, "
                  + "\(video.rejectedPackets) packets rejected")
        } catch {
            expectOneLine("\(error)", naming: path)
            print("[video] corrupt.mp4: \(error)")
        }
    }

    /// Cuts and garbles every fixture in many ways: each must open and decode, or fail with a
    /// one-line error naming the file; never crash or hang.
    @Test(arguments: ["phone_h264_rot90.mp4", "mpeg4_part2.avi", "vp8.webm", "mjpeg.avi", "h264.mov"])
    func damagedCopiesNeverCrash(name: String) throws {
        let original = try fixtureBytes(name)
        let dir = try TemporaryDirectory()
        var generator = SplitMix64(seed: 7)
        var outcomes: [String: Int] = [:]
        for trial in 0..<12 {
            var bytes = original
            if trial < 6 {
                bytes = Array(bytes.prefix(bytes.count * (trial * 2 + 1) / 13))
            } else {
                let start = Int.random(in: 0..<bytes.count, using: &generator)
                for i in start..<min(start + 200 * trial, bytes.count) { bytes[i] = UInt8.random(in: 0...255, using: &generator) }
            }
            let path = try dir.write(bytes, to: "damaged\(trial)-\(name)")
            do {
                let video = try VideoFile(path: path)
                let frames = try video.frames(at: [0, video.frameCount / 2, video.frameCount - 1, 1, 0])
                #expect(frames.count == 5)
                outcomes["decoded", default: 0] += 1
            } catch let error as VideoError {
                expectOneLine("\(error)", naming: path)
                outcomes["\(error.kind)", default: 0] += 1
            }
        }
        print("[video] damaged copies of \(name): \(outcomes.sorted { $0.key < $1.key })")
    }
}

