import Foundation
import Testing
@testable import Video

/// Tests/Fixtures/video, found from this file's location.
let videoFixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").appendingPathComponent("video")

func fixture(_ name: String) -> String { videoFixtures.appendingPathComponent(name).path }

func fixtureBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: videoFixtures.appendingPathComponent(name)))
}

/// reference.json, written by scripts/fixtures/make_video_fixtures.py from ffprobe and the
/// ffmpeg CLI.
struct VideoReference: Decodable {
    struct Frame: Decodable {
        let index: Int
        let cropX: Int
        let cropY: Int
        let fnv1a64: String
        enum CodingKeys: String, CodingKey {
            case index, fnv1a64
            case cropX = "crop_x"
            case cropY = "crop_y"
        }
    }

    struct Video: Decodable {
        let width: Int
        let height: Int
        let rotation: Int
        let decodedFrames: Int
        let headerFrames: Int?
        let avgFrameRate: String
        let timestamps: [Double]
        let frames: [Frame]
        enum CodingKeys: String, CodingKey {
            case width, height, rotation, timestamps, frames
            case decodedFrames = "decoded_frames"
            case headerFrames = "header_frames"
            case avgFrameRate = "avg_frame_rate"
        }
    }

    let crop: Int
    let block: Int
    let videos: [String: Video]

    static let shared: VideoReference = {
        let data = try! Data(contentsOf: videoFixtures.appendingPathComponent("reference.json"))
        return try! JSONDecoder().decode(VideoReference.self, from: data)
    }()
}

func fnv1a64(_ bytes: [UInt8]) -> String {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes {
        hash ^= UInt64(b)
        hash = hash &* 0x0000_0100_0000_01B3
    }
    let hex = String(hash, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}

/// Sums of each whole block × block square per channel: (H / block, W / block, 3).
func blockSums(_ frame: RGBFrame, block: Int) -> [Int] {
    let bh = frame.height / block, bw = frame.width / block
    var sums = [Int](repeating: 0, count: bh * bw * 3)
    for y in 0..<(bh * block) {
        for x in 0..<(bw * block) {
            for c in 0..<3 {
                sums[((y / block) * bw + x / block) * 3 + c] += Int(frame.rgb[(y * frame.width + x) * 3 + c])
            }
        }
    }
    return sums
}

func crop(_ frame: RGBFrame, x: Int, y: Int, size: Int) -> [UInt8] {
    var out: [UInt8] = []
    for row in y..<(y + size) {
        let start = (row * frame.width + x) * 3
        out += frame.rgb[start..<(start + size * 3)]
    }
    return out
}

func littleEndianUInt16(_ bytes: [UInt8]) -> [UInt16] {
    stride(from: 0, to: bytes.count - 1, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
}

/// The error message thrown by `body`, or nil when it does not throw.
func errorMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return "\(error)"
    }
}

/// A scratch directory removed when the value is released.
final class TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-video-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    func write(_ bytes: [UInt8], to name: String) throws -> String {
        let path = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}
