import Foundation
import Testing

/// `m2clip export` and `m2clip convert --base --adapters` as a user runs them: the round trip
/// through the release's state dict and through an adapters file gives every tensor back
/// byte for byte; 16-bit models widen, int8 ones and bad outputs fail in one line.
@Suite struct ExportCommandTests {
    let cli = CLITests()
    let dir: URL

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-export-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// A tiny fp32 model file converted from a random CLIP of `seed`.
    func model(_ name: String, seed: Int = 0) throws -> String {
        let clip = path("clip-\(seed)")
        if !FileManager.default.fileExists(atPath: clip) {
            #expect(try cli.run(["random-checkpoint", "--preset", "tiny", "--seed", "\(seed)", "--out", clip]).status == 0)
        }
        try "juggling\nsurfing\nplaying cello\n".write(toFile: path("labels.txt"), atomically: true, encoding: .utf8)
        let convert = try cli.run(["convert", "--hf", clip, "--labels", path("labels.txt"), "--frames", "4",
                                   "--out", path(name), "--threads", "2"])
        #expect(convert.status == 0, "\(convert.stderr)")
        return path(name)
    }

    struct Tensor: Equatable {
        var dtype: String
        var shape: [Int]
        var bytes: Data
    }

    /// The tensors of a safetensors file, read straight from its header.
    static func tensors(_ path: String) throws -> [String: Tensor] {
        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = file.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONSerialization.jsonObject(with: file.dropFirst(8).prefix(headerLength)) as! [String: Any]
        let data = file.dropFirst(8 + headerLength)
        var out: [String: Tensor] = [:]
        for (name, value) in header where name != "__metadata__" {
            let entry = value as! [String: Any], offsets = entry["data_offsets"] as! [Int]
            out[name] = Tensor(dtype: entry["dtype"] as! String, shape: entry["shape"] as! [Int],
                               bytes: Data(data.dropFirst(offsets[0]).prefix(offsets[1] - offsets[0])))
        }
        return out
    }

    func expectSameTensors(_ actual: String, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let a = try Self.tensors(actual), e = try Self.tensors(expected)
        #expect(a.keys.sorted() == e.keys.sorted(), sourceLocation: sourceLocation)
        for (name, tensor) in e { #expect(a[name] == tensor, "\(name) differs", sourceLocation: sourceLocation) }
    }

    @Test func releaseStateDictRoundTrips() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let original = try model("fp32.m2c")
        let export = try cli.run(["export", "--model", original, "--authors", path("release.safetensors")])
        #expect(export.status == 0, "\(export.stderr)")
        #expect(export.stdout.contains("wrote \(path("release.safetensors"))"), "\(export.stdout)")
        let release = try Self.tensors(path("release.safetensors"))
        #expect(release.values.allSatisfy { $0.dtype == "F32" } && !release.keys.contains { $0.hasPrefix("m2clip.") })

        // No --labels, --mlm-words or --clip-config: the export carries them.
        let back = try cli.run(["convert", "--authors", path("release.safetensors"), "--frames", "4",
                                "--out", path("back.m2c"), "--threads", "2"])
        #expect(back.status == 0, "\(back.stderr)")
        try expectSameTensors(path("back.m2c"), original)
    }

    @Test func adaptersCombineWithTheirBaseOnly() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let original = try model("fp32.m2c")
        let export = try cli.run(["export", "--model", original, "--adapters", path("adapters.safetensors")])
        #expect(export.status == 0, "\(export.stderr)")
        let adapters = try Self.tensors(path("adapters.safetensors"))
        #expect(!adapters.isEmpty && adapters.keys.allSatisfy { $0.contains("adapter") })
        let size = try FileManager.default.attributesOfItem(atPath: path("adapters.safetensors"))[.size] as! Int
        print("adapters file of the tiny model: \(size) bytes; \(export.stdout)")

        let combine = try cli.run(["convert", "--base", original, "--adapters", path("adapters.safetensors"),
                                   "--out", path("combined.m2c"), "--threads", "2"])
        #expect(combine.status == 0, "\(combine.stderr)")
        try expectSameTensors(path("combined.m2c"), original)

        let other = try model("other.m2c", seed: 1)
        let refused = try cli.run(["convert", "--base", other, "--adapters", path("adapters.safetensors"),
                                   "--out", path("wrong.m2c")])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains(other) && refused.stderr.contains(path("adapters.safetensors"))
                && refused.stderr.contains("fingerprint"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path("wrong.m2c")))
    }

    @Test func sixteenBitWidensAndInt8IsRefused() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let original = try model("fp32.m2c")
        #expect(try cli.run(["quantize", original, "--to", "bf16", "--keep-training-parts", "--out", path("bf16.m2c"),
                             "--clips", "1", "--threads", "2"]).status == 0)
        let widened = try cli.run(["export", "--model", path("bf16.m2c"), "--authors", path("bf16.safetensors")])
        #expect(widened.status == 0 && widened.stdout.contains("widened"), "\(widened.stdout)\(widened.stderr)")
        #expect(try Self.tensors(path("bf16.safetensors")).values.allSatisfy { $0.dtype == "F32" })

        #expect(try cli.run(["quantize", original, "--to", "int8", "--out", path("int8.m2c"),
                             "--clips", "1", "--threads", "2"]).status == 0)
        let refused = try cli.run(["export", "--model", path("int8.m2c"), "--authors", path("int8.safetensors")])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("int8") && refused.stderr.contains("export the fp32 model")
                && refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path("int8.safetensors")))
    }

    @Test func helpNamesBothExports() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try cli.run(["--help"]).stdout.contains("export"))
        let help = try cli.run(["export", "--help"])
        #expect(help.status == 0 && help.stdout.contains("--authors") && help.stdout.contains("--adapters"), "\(help.stdout)")
        #expect(try cli.run(["convert", "--help"]).stdout.contains("--base"))
    }

    @Test func badArgumentsAndOutputsFailCleanly() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let original = try model("fp32.m2c")
        let neither = try cli.run(["export", "--model", original])
        #expect(neither.status == 64 && neither.stderr.contains("--authors"), "\(neither.stderr)")
        let both = try cli.run(["export", "--model", original, "--authors", path("a"), "--adapters", path("b")])
        #expect(both.status == 64, "status \(both.status)")
        let unwritable = path("missing/release.safetensors")
        let failed = try cli.run(["export", "--model", original, "--authors", unwritable])
        #expect(failed.status != 0 && failed.stderr.contains(unwritable) && failed.stderr.contains("cannot write"),
                "\(failed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path("missing")))
        let lonely = try cli.run(["convert", "--base", original, "--out", path("x.m2c")])
        #expect(lonely.status == 64 && lonely.stderr.contains("--adapters"), "\(lonely.stderr)")
    }
}
