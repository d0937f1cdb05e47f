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

    @Test func argumentErrorsAreUsageErrors() throws {
        let r = try run(["bench", "--model", "x", "--frames", "0"])
        #expect(r.status == 64, "status \(r.status)")
        #expect(r.stderr.contains("--frames"))
    }
}
