import Foundation
import Testing
import SafeTensors
import Ops
@testable import M2Model

/// `m2clip export`: the release's state dict and the adapters-only file give the model back
/// when imported (`Conversion.Source.authors`) or combined with their base (`AdapterFile`),
/// every tensor bit for bit; the wrong base is refused.
@Suite struct ExportTests {
    static let labels = TrainingPartsTests.labels
    static let clip = RandomCheckpoint.Preset.tiny.configuration

    let context: ComputeContext
    let dir: TemporaryDirectory

    init() throws {
        context = try ComputeContext(threads: 2)
        dir = try TemporaryDirectory()
    }

    func path(_ name: String) -> String { dir.url.appendingPathComponent(name).path }

    /// A tiny random CLIP (seed `clipSeed`) converted with `preset` and adapter seed `seed`.
    func modelFile(_ preset: M2CLIPConfiguration.Preset, clipSeed: UInt64 = 11, seed: UInt64 = 3,
                   labels: [String] = labels, name: String) throws -> String {
        let clipDirectory = path("clip-\(clipSeed)")
        if !FileManager.default.fileExists(atPath: clipDirectory) {
            try RandomCheckpoint.write(configuration: Self.clip, to: clipDirectory, seed: clipSeed)
        }
        try Conversion.convert(.huggingFace(directory: clipDirectory),
                               options: .init(labels: labels, preset: preset, frames: 2, seed: seed),
                               output: path(name), context: context)
        return path(name)
    }

    /// Every tensor of `actual` has the name, dtype, shape and bytes of `expected`'s.
    func expectSameTensors(_ actual: String, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let a = try SafeTensorsFile(path: actual), e = try SafeTensorsFile(path: expected)
        #expect(Set(a.names) == Set(e.names), "\(Set(a.names).symmetricDifference(e.names).sorted())",
                sourceLocation: sourceLocation)
        for name in e.names where a.contains(name) {
            #expect(a.info(name)!.dtype == e.info(name)!.dtype && a.info(name)!.shape == e.info(name)!.shape,
                    "\(name)", sourceLocation: sourceLocation)
            #expect(Array(try a.bytes(name)) == Array(try e.bytes(name)), "\(name) differs", sourceLocation: sourceLocation)
        }
    }

    func configuration(_ file: String) throws -> M2CLIPConfiguration {
        try ModelFile.load(path: file, context: context).configuration
    }

    // MARK: - SHA-256

    @Test func sha256MatchesTheFIPSVectors() {
        #expect(SHA256.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256.hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Fed in uneven pieces, across block boundaries: the same digest.
        var pieces = SHA256(), offset = 0, step = 1
        while offset < million.count {
            let end = min(offset + step, million.count)
            million[offset..<end].withUnsafeBytes { pieces.update($0) }
            offset = end
            step = step * 3 % 1000 + 1
        }
        #expect(pieces.finalize() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    // MARK: - the release's state dict

    @Test(arguments: [M2CLIPConfiguration.Preset.k400, .ssv2])
    func releaseStateDictRoundTrips(preset: M2CLIPConfiguration.Preset) throws {
        let original = try modelFile(preset, name: "original.m2c")
        let exported = path("release.safetensors")
        let summary = try ReleaseExport.writeStateDict(model: original, to: exported)

        let release = try SafeTensorsFile(path: exported), model = try SafeTensorsFile(path: original)
        #expect(Set(release.names) == Set(model.names.filter { !$0.hasPrefix("m2clip.") }))
        #expect(release.names.allSatisfy { release.info($0)!.dtype == .f32 })
        #expect(summary.tensors == release.names.count && summary.widened == 0)
        // The release's layout: the CMLM block is text block 2 (of 2 CLIP blocks), TE and TD
        // convs are Conv1d (r, 1, 3) and Conv3d (r, 1, 1, 3, 3).
        #expect(release.contains("transformer.resblocks.2.attn.in_proj_weight"))
        let ted = M2CLIPNames.ted(layer: 0, position: .preMLP)
        #expect(release.info(ted.teConv.weight)?.shape.count == 3 && release.info(ted.teConv.weight)?.shape.suffix(2) == [1, 3])
        #expect(release.info(ted.tdConv.weight)?.shape.suffix(4) == [1, 1, 3, 3])

        // Imported with nothing but the file: its metadata carries labels, words and sizes.
        let carried = try #require(try ReleaseExport.carried(exported))
        #expect(carried.labels == Self.labels)
        try Conversion.convert(.authors(weights: exported),
                               options: .init(labels: carried.labels, preset: preset, frames: 2),
                               output: path("reimported.m2c"), context: context)
        try expectSameTensors(path("reimported.m2c"), original)
        #expect(try configuration(path("reimported.m2c")) == configuration(original))
    }

    @Test func int8ModelIsRefused() throws {
        let original = try modelFile(.k400, name: "fp32.m2c")
        // An int8 weight as `m2clip quantize` writes it.
        let file = try SafeTensorsFile(path: original)
        var writer = SafeTensorsWriter(metadata: file.metadata)
        for name in file.names {
            let info = file.info(name)!
            if name == "visual.transformer.resblocks.0.mlp.c_fc.weight" {
                try writer.add(name: name, dtype: .i8, shape: info.shape, bytes: [UInt8](repeating: 1, count: info.elementCount))
            } else {
                try writer.add(name: name, dtype: info.dtype, shape: info.shape, bytes: try file.bytes(name))
            }
        }
        try writer.write(to: path("int8.m2c"))
        for export in [{ try ReleaseExport.writeStateDict(model: path("int8.m2c"), to: path("out.safetensors")) },
                       { try AdapterFile.write(model: path("int8.m2c"), to: path("out.safetensors")) }] {
            do {
                _ = try export()
                Issue.record("exported an int8 model")
            } catch {
                let message = "\(error)"
                #expect(message.contains(path("int8.m2c")) && message.contains("int8") && message.contains("fp32")
                        && !message.contains("\n"), "\(message)")
            }
            #expect(!FileManager.default.fileExists(atPath: path("out.safetensors")))
        }
    }

    @Test func unwritableOutputLeavesNoFile() throws {
        let original = try modelFile(.k400, name: "m.m2c")
        let target = path("no-such-directory/release.safetensors")
        do {
            try ReleaseExport.writeStateDict(model: original, to: target)
            Issue.record("wrote into a missing directory")
        } catch {
            #expect("\(error)".contains(target) && "\(error)".contains("cannot write"), "\(error)")
        }
        // Onto a directory: refused, and nothing left beside it.
        try FileManager.default.createDirectory(atPath: path("taken"), withIntermediateDirectories: false)
        let before = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(throws: CheckpointError.self) { try AdapterFile.write(model: original, to: path("taken")) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == before)
    }

    // MARK: - adapters only

    @Test(arguments: [M2CLIPConfiguration.Preset.k400, .ssv2])
    func adaptersOnTheirBaseGiveTheModelBack(preset: M2CLIPConfiguration.Preset) throws {
        let original = try modelFile(preset, name: "original.m2c")
        let adapters = path("adapters.safetensors")
        let summary = try AdapterFile.write(model: original, to: adapters)
        let file = try SafeTensorsFile(path: adapters)
        #expect(file.names.allSatisfy { M2CLIPNames.isTrainable($0) && $0.contains("adapter") && file.info($0)!.dtype == .f32 })
        let model = try SafeTensorsFile(path: original)
        #expect(Set(file.names) == Set(model.names.filter { $0.contains("adapter") }))
        #expect(summary.parameters == file.names.map { file.info($0)!.elementCount }.reduce(0, +))

        // The same CLIP with other adapters, another seed and other labels: the same frozen base.
        let base = try modelFile(preset, seed: 9, labels: ["running", "jumping"], name: "base.m2c")
        #expect(try AdapterFile.fingerprint(SafeTensorsFile(path: base)) == AdapterFile.fingerprint(model))
        let combined = try AdapterFile.combine(base: base, adapters: adapters, output: path("combined.m2c"), context: context)
        #expect(combined.labels == Self.labels)
        try expectSameTensors(path("combined.m2c"), original)
        #expect(try configuration(path("combined.m2c")) == configuration(original))
    }

    @Test func adaptersRefuseAnotherBase() throws {
        let original = try modelFile(.k400, name: "original.m2c")
        let adapters = path("adapters.safetensors")
        try AdapterFile.write(model: original, to: adapters)
        let other = try modelFile(.k400, clipSeed: 12, name: "other.m2c")
        let expected = try AdapterFile.fingerprint(SafeTensorsFile(path: original))
        let actual = try AdapterFile.fingerprint(SafeTensorsFile(path: other))
        #expect(expected != actual && expected.count == 64)
        do {
            try AdapterFile.combine(base: other, adapters: adapters, output: path("combined.m2c"), context: context)
            Issue.record("combined with another base")
        } catch {
            let message = "\(error)"
            #expect(message.contains(other) && message.contains(adapters) && message.contains(expected)
                    && message.contains(actual), "\(message)")
        }
        #expect(!FileManager.default.fileExists(atPath: path("combined.m2c")))
        // A release state dict is no adapters file.
        try ReleaseExport.writeStateDict(model: original, to: path("release.safetensors"))
        #expect(throws: CheckpointError.self) {
            try AdapterFile.combine(base: original, adapters: path("release.safetensors"), output: path("c.m2c"), context: context)
        }
    }
}
