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

    /// An untrained tiny model over "juggling" and "surfing" (4 frames) at `dir`/tiny.m2c, made
    /// through the CLI; its URL.
    static func makeTinyModel(in dir: URL) throws -> URL {
        let cli = CLITests()
        #expect(try cli.run(["random-checkpoint", "--preset", "tiny", "--out", dir.appendingPathComponent("clip").path]).status == 0)
        try "juggling\nsurfing\n".write(to: dir.appendingPathComponent("labels.txt"), atomically: true, encoding: .utf8)
        let convert = try cli.run(["convert", "--hf", dir.appendingPathComponent("clip").path, "--labels",
                                   dir.appendingPathComponent("labels.txt").path, "--frames", "4",
                                   "--out", dir.appendingPathComponent("tiny.m2c").path])
        #expect(convert.status == 0, "\(convert.stderr)")
        return dir.appendingPathComponent("tiny.m2c")
    }

    /// A process for `executable` with `arguments`, under `wrapper` (a command such as
    /// prlimit) when given; not started.
    static func process(_ executable: URL, _ arguments: [String], under wrapper: [String] = []) -> Process {
        let process = Process()
        if wrapper.isEmpty {
            process.executableURL = executable
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = wrapper + [executable.path] + arguments
        }
        return process
    }

    /// Runs m2clip with `arguments`, under `wrapper` (a command such as prlimit) when given.
    func run(_ arguments: [String], under wrapper: [String] = []) throws -> Run {
        let process = Self.process(Self.binary, arguments, under: wrapper)
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
        for command in ["classify", "convert", "quantize", "inspect", "labels", "embed", "bench", "subscribe", "events", "random-checkpoint"] {
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

    /// A safetensors file from (name, dtype, shape, little-endian bytes).
    static func safetensors(_ tensors: [(String, String, [Int], Data)]) -> Data {
        var header: [String: Any] = [:], body = Data()
        for (name, dtype, shape, bytes) in tensors {
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [body.count, body.count + bytes.count]]
            body.append(bytes)
        }
        var json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        return out + json + body
    }

    static func bytes<T>(_ values: [T]) -> Data { values.withUnsafeBytes { Data($0) } }

    /// `train grad` end to end on a tiny fresh model: every loss term, a gradient for every
    /// trainable tensor, JSON; a batch of the wrong size and a broken file are refused with the
    /// file and tensor named, and nothing is written.
    @Test func trainGradWritesGradientsAndRefusesBadBatches() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-train-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = { (name: String) in dir.appendingPathComponent(name).path }
        #expect(try run(["random-checkpoint", "--preset", "tiny", "--out", path("clip")]).status == 0)
        try "juggling\nsurfing\nplaying cello\n".write(toFile: path("labels.txt"), atomically: true, encoding: .utf8)
        let convert = try run(["convert", "--hf", path("clip"), "--labels", path("labels.txt"), "--frames", "3",
                               "--out", path("m.m2c")])
        #expect(convert.status == 0, "\(convert.stderr)")
        // "a video of <label>" with the label masked (token 4027 stands in at its position): the
        // MLM label is the word's index in the default word list (the prompts' words, sorted).
        let words = ["a", "cello", "juggling", "of", "playing", "surfing", "video"]
        var ids = [Int64](repeating: 0, count: 2 * 77), mlm = [Int64](repeating: -100, count: 2 * 77)
        for b in 0..<2 {
            let row: [Int64] = [49406, 320, 1455, 539, 4027, 49407] // sot a video of [masked] eot
            for (i, t) in row.enumerated() { ids[b * 77 + i] = t }
            mlm[b * 77 + 4] = Int64(words.firstIndex(of: b == 0 ? "juggling" : "surfing")!)
        }
        var rng = SystemRandomNumberGenerator()
        let pixels = (0..<(2 * 3 * 3 * 32 * 32)).map { _ in Float.random(in: -1...1, using: &rng) }
        func batch(_ name: String, pixels: [Float], shape: [Int], labels: [Int64] = [0, 1], mlm: [Int64]? = mlm,
                   dropping: String? = nil) throws -> String {
            let tensors = [("pixel_values", "F32", shape, Self.bytes(pixels)),
                           ("labels", "I64", [2], Self.bytes(labels)),
                           ("input_ids", "I64", [2, 77], Self.bytes(ids))]
                + (mlm.map { [("mlm_labels", "I64", [2, 77], Self.bytes($0))] } ?? [])
            try Self.safetensors(tensors.filter { $0.0 != dropping }).write(to: URL(fileURLWithPath: path(name)))
            return path(name)
        }
        let good = try batch("batch.safetensors", pixels: pixels, shape: [2, 3, 3, 32, 32])
        let r = try run(["train", "grad", "--model", path("m.m2c"), "--batch", good, "--out", path("g.safetensors"),
                         "--iterations", "2", "--json", "--threads", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let losses = json?["losses"] as? [String: Double] ?? [:]
        for term in ["contrastive_v2t", "contrastive_t2v", "cmc", "vc", "mlm", "total"] {
            #expect((losses[term] ?? 0) > 0, "loss \(term): \(losses)")
        }
        #expect((json?["step_ms"] as? [Double])?.count == 2)
        let grads = try Data(contentsOf: URL(fileURLWithPath: path("g.safetensors")))
        let header = String(decoding: grads.dropFirst(8).prefix(1 << 20), as: UTF8.self)
        for name in ["mlm_adapter.", "visual.transformer.resblocks.0.adapter_pre_mlp.fc1.weight", "visual.t_adapter.fc2.bias",
                     "transformer.resblocks.1.adapter_pre_mlp.textad_fc1.weight", "visual.adapter_fc.weight"] {
            #expect(header.contains(name), "gradients lack \(name)")
        }

        let small = try batch("small.safetensors", pixels: Array(pixels.prefix(2 * 3 * 3 * 16 * 16)), shape: [2, 3, 3, 16, 16])
        let wrong = try run(["train", "grad", "--model", path("m.m2c"), "--batch", small, "--out", path("w.safetensors")])
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains(small) && wrong.stderr.contains("pixel_values"), "\(wrong.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path("w.safetensors")))
        try Data(repeating: 0xff, count: 40).write(to: URL(fileURLWithPath: path("broken.safetensors")))
        let broken = try run(["train", "grad", "--model", path("m.m2c"), "--batch", path("broken.safetensors")])
        #expect(broken.status != 0 && broken.stderr.contains("broken.safetensors"), "\(broken.stderr)")

        // each bad input: a one-line error naming the file and the tensor, nothing written
        let shape = [2, 3, 3, 32, 32]
        var outOfVocabulary = mlm
        outOfVocabulary[4] = 99
        let refused: [(String, String, String)] = [
            (try batch("nolabels.safetensors", pixels: pixels, shape: shape, dropping: "labels"), "labels", "is missing"),
            (try batch("class.safetensors", pixels: pixels, shape: shape, labels: [0, 3]), "labels", "outside the model's 3 labels"),
            (try batch("word.safetensors", pixels: pixels, shape: shape, mlm: outOfVocabulary), "mlm_labels", "7-word MLM vocabulary"),
        ]
        for (file, tensor, why) in refused {
            let r = try run(["train", "grad", "--model", path("m.m2c"), "--batch", file, "--out", path("w.safetensors")])
            let lines = r.stderr.split(separator: "\n")
            #expect(r.status != 0 && lines.count == 1 && r.stderr.contains(file) && r.stderr.contains("tensor \(tensor)")
                    && r.stderr.contains(why), "\(file): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: path("w.safetensors")))
        }
        // models that cannot train: int8, and fp16 (whose training parts quantize also dropped)
        #expect(try run(["quantize", path("m.m2c"), "--to", "int8", "--clips", "1", "--out", path("q.m2c")]).status == 0)
        #expect(try run(["quantize", path("m.m2c"), "--to", "fp16", "--clips", "1", "--out", path("h.m2c")]).status == 0)
        for (model, why) in [(path("q.m2c"), "int8 model file cannot be trained"), (path("h.m2c"), "fp16 model file cannot be trained")] {
            let r = try run(["train", "grad", "--model", model, "--batch", good])
            #expect(r.status != 0 && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(why), "\(model): \(r.stderr)")
        }
    }

    @Test func argumentErrorsAreUsageErrors() throws {
        let r = try run(["bench", "--model", "x", "--frames", "0"])
        #expect(r.status == 64, "status \(r.status)")
        #expect(r.stderr.contains("--frames"))
    }
}
