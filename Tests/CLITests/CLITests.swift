import Foundation
import Testing

/// The `m2clip` executable as a user runs it: help text, exit statuses, errors on stderr.
@Suite struct CLITests {
    /// The binary next to the test bundle (.build/<configuration>/m2clip).
    static var binary: URL {
        var dir = Bundle.main.bundleURL
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("m2clip").path),
              dir.pathComponents.count > 1 {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("m2clip")
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    func run(_ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                   stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test func helpListsTheCommands() throws {
        let help = try run(["--help"])
        #expect(help.status == 0)
        for command in ["classify", "convert", "quantize", "inspect", "labels", "embed", "bench", "random-checkpoint"] {
            #expect(help.stdout.contains(command), "--help does not mention \(command)")
        }
    }

    @Test func embedMatchesTheFixtureAndFailsCleanly() throws {
        let model = Self.fixtures.appendingPathComponent("tiny-clip").path
        let pixels = Self.fixtures.appendingPathComponent("tiny-clip/reference.safetensors").path
        let ok = try run(["embed", "--model", model, "--pixels", pixels, "--json", "--threads", "1"])
        #expect(ok.status == 0, "\(ok.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(ok.stdout.utf8)) as? [String: Any]
        #expect((json?["image_embeds"] as? [[Double]])?.count == 3)

        let missing = try run(["embed", "--model", "/nonexistent/dir", "--text", "hi"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("/nonexistent/dir"), "\(missing.stderr)")
        #expect(missing.stdout.isEmpty)

        // pixel_values of the wrong size for this model names the file and the tensor
        let wrong = try run(["embed", "--model", model, "--pixels",
                             Self.fixtures.appendingPathComponent("m2clip-tiny/reference.safetensors").path])
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("pixel_values"), "\(wrong.stderr)")
    }

    /// `quantize --to bf16` end to end: a tiny untrained model, the report on generated clips,
    /// and a bf16 file; an unknown target is a usage error naming the choices.
    @Test func quantizeToBF16() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-bf16-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = { (name: String) in dir.appendingPathComponent(name).path }
        #expect(try run(["random-checkpoint", "--preset", "tiny", "--out", path("clip")]).status == 0)
        try "juggling\nsurfing\n".write(toFile: path("labels.txt"), atomically: true, encoding: .utf8)
        let convert = try run(["convert", "--hf", path("clip"), "--labels", path("labels.txt"), "--frames", "4",
                               "--out", path("fp32.m2c")])
        #expect(convert.status == 0, "\(convert.stderr)")
        let quantize = try run(["quantize", path("fp32.m2c"), "--to", "bf16", "--out", path("bf16.m2c"),
                                "--clips", "2", "--threads", "2"])
        #expect(quantize.status == 0, "\(quantize.stderr)")
        #expect(quantize.stdout.contains("video embedding cosine"), "\(quantize.stdout)")
        // safetensors: a little-endian u64 header length, then the JSON header.
        let file = try Data(contentsOf: URL(fileURLWithPath: path("bf16.m2c")))
        let headerLength = file.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = String(decoding: file.dropFirst(8).prefix(headerLength), as: UTF8.self)
        #expect(header.contains("\"dtype\":\"BF16\""))

        let wrong = try run(["quantize", path("fp32.m2c"), "--to", "fp8", "--out", path("x.m2c")])
        #expect(wrong.status == 64, "status \(wrong.status)")
        #expect(wrong.stderr.contains("int8, fp16 or bf16"), "\(wrong.stderr)")
    }

    @Test func argumentErrorsAreUsageErrors() throws {
        let r = try run(["bench", "--model", "x", "--frames", "0"])
        #expect(r.status == 64, "status \(r.status)")
        #expect(r.stderr.contains("--frames"))
    }
}
