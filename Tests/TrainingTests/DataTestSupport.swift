import Foundation
import Testing
@testable import Training

/// Tests/Fixtures/video, found from this file's location.
let dataVideoFixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").appendingPathComponent("video")

/// A scratch directory for clip lists and generated videos, removed when released.
final class DataScratch {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Writes `text` to `name` (folders created) and returns its path.
    @discardableResult
    func write(_ text: String, to name: String) throws -> String {
        let path = path(name)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Encodes `frames` frames of width × height from `pixel(frame, x, y) -> (r, g, b)` with the
    /// ffmpeg CLI (MPEG-4 part 2 at the best quality, so colours survive to within a few levels).
    @discardableResult
    func video(_ name: String, width: Int, height: Int, frames: Int,
               pixel: (Int, Int, Int) -> (UInt8, UInt8, UInt8)) throws -> String {
        let path = path(name)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        var raw = [UInt8]()
        raw.reserveCapacity(frames * width * height * 3)
        for f in 0..<frames {
            for y in 0..<height {
                for x in 0..<width {
                    let (r, g, b) = pixel(f, x, y)
                    raw += [r, g, b]
                }
            }
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                             "-s", "\(width)x\(height)", "-r", "10", "-i", "pipe:0", "-c:v", "mpeg4", "-qscale:v", "1",
                             "-pix_fmt", "yuv420p", path]
        let input = Pipe()
        process.standardInput = input
        try process.run()
        input.fileHandleForWriting.write(Data(raw))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TrainingError("ffmpeg could not write \(path) (status \(process.terminationStatus))")
        }
        return path
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// The message `body` throws, or nil when it does not throw.
func thrownMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return "\(error)"
    }
}
