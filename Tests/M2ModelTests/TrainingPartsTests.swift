import Foundation
import Testing
import SafeTensors
import Ops
@testable import M2Model

/// Model files keep what training needs (spec §3, §4, §8): the CMLM block, its text adapters
/// and the MLM head with its word vocabulary, created for CLIP sources and imported from every
/// layout of the authors' release; a file that claims them must hold them.
@Suite struct TrainingPartsTests {
    static let labels = ["juggling", "surfing", "playing cello"]
    /// The words of "A video of {label}" for `labels`, sorted.
    static let words = ["a", "cello", "juggling", "of", "playing", "surfing", "video"]
    static let clip = RandomCheckpoint.Preset.tiny.configuration

    let context: ComputeContext
    let dir: TemporaryDirectory

    init() throws {
        context = try ComputeContext(threads: 2)
        dir = try TemporaryDirectory()
    }

    func path(_ name: String) -> String { dir.url.appendingPathComponent(name).path }

    /// A tiny random CLIP (Hugging Face layout) converted with `preset`; returns the model file.
    func freshModelFile(_ preset: M2CLIPConfiguration.Preset, mlmWords: [String]? = nil,
                        name: String = "fresh.m2c") throws -> String {
        let clipDirectory = path("clip-\(name)")
        if !FileManager.default.fileExists(atPath: clipDirectory) {
            try RandomCheckpoint.write(configuration: Self.clip, to: clipDirectory, seed: 11)
        }
        try Conversion.convert(.huggingFace(directory: clipDirectory),
                               options: .init(labels: Self.labels, preset: preset, frames: 2, seed: 3, mlmWords: mlmWords),
                               output: path(name), context: context)
        return path(name)
    }

    typealias Tensors = [(name: String, shape: [Int], values: [Float])]

    func tensors(_ path: String) throws -> Tensors {
        let file = try SafeTensorsFile(path: path)
        return try file.names.map { ($0, file.info($0)!.shape, try file.floats($0)) }
    }

    /// A state dict as the release saves it, made from a model file's tensors (the release's
    /// names, without m2clip's own) through `edit`.
    func releaseStateDict(from modelFile: String, name: String, _ edit: (inout Tensors) -> Void = { _ in }) throws -> String {
        var t = try tensors(modelFile).filter { $0.name != M2CLIPNames.labelTextEmbeddings }
        edit(&t)
        var writer = SafeTensorsWriter()
        for x in t { try writer.add(name: x.name, shape: x.shape, floats: x.values) }
        try writer.write(to: path(name))
        return path(name)
    }

    func importError(_ weights: String, options: Conversion.Options? = nil) -> String? {
        do {
            let file = try SafeTensorsFile(path: weights)
            _ = try Conversion.inferM2CLIP(file, options: options ?? .init(labels: Self.labels, clip: Self.clip))
            return nil
        } catch {
            return "\(error)"
        }
    }

    // MARK: - fresh sources

    @Test func freshK400ConversionCreatesTheCMLMParts() throws {
        let file = try freshModelFile(.k400)
        let model = try ModelFile.load(path: file, context: context)
        let c = model.configuration
        #expect(c.textAdapter.layers == [1] && c.textAdapter.positions == [.preMLP])
        #expect(c.cmlm == CMLMConfiguration(adapterPositions: [.preMLP], words: Self.words))

        let weights = try SafeTensorsFile(path: file)
        // The CMLM block (text block 2) is a copy of the last CLIP text block.
        for name in Conversion.blockTensorNames(OpenAICLIPNames.block(OpenAICLIPNames.textBlock(1))) {
            let copy = "transformer.resblocks.2" + name.dropFirst("transformer.resblocks.1".count)
            #expect(try weights.floats(copy) == weights.floats(name), "\(copy)")
        }
        // Its adapter starts as the identity; none before attention in the K400 layout.
        let adapter = M2CLIPNames.textAdapter(layer: 2, position: .preMLP)
        #expect(weights.info(adapter.fc1.weight)?.shape == [24, 32])
        #expect(try weights.floats(adapter.fc2.weight).allSatisfy { $0 == 0 })
        #expect(!weights.contains(M2CLIPNames.textAdapter(layer: 2, position: .preAttention).fc1.weight))
        // The MLM head.
        typealias H = M2CLIPNames.MLMHead
        #expect(weights.info(H.dense.weight)?.shape == [32, 32])
        let dense = try weights.floats(H.dense.weight), bound = 1 / Float(32).squareRoot()
        #expect(dense.allSatisfy { abs($0) <= bound } && dense.contains { $0 != 0 })
        #expect(try weights.floats(H.dense.bias).contains { $0 != 0 })
        #expect(try weights.floats(H.layerNorm.weight) == [Float](repeating: 1, count: 32))
        #expect(try weights.floats(H.layerNorm.bias) == [Float](repeating: 0, count: 32))
        #expect(weights.info(H.decoderWeight)?.shape == [7, 32])
        #expect(try weights.floats(H.decoderBias) == [Float](repeating: 0, count: 7))
        // Inference ignores all of it: the parameter counts are those of the inference parts.
        #expect(model.parameterCounts.total < weights.names.filter { !$0.hasPrefix("m2clip.") }
            .map { weights.info($0)!.elementCount }.reduce(0, +))
    }

    @Test func freshSSv2ConversionFollowsTheReleaseLayout() throws {
        let file = try freshModelFile(.ssv2)
        let c = try ModelFile.load(path: file, context: context).configuration
        #expect(c.ted.positions == [.preAttention, .preMLP])
        #expect(c.textAdapter.layers == [0, 1] && c.textAdapter.positions == [.preAttention, .preMLP])
        #expect(c.cmlm?.adapterPositions == [.preAttention, .preMLP])
        let weights = try SafeTensorsFile(path: file)
        for layer in 0...2 {
            for position in TEDConfiguration.Position.allCases {
                let adapter = M2CLIPNames.textAdapter(layer: layer, position: position)
                #expect(try weights.floats(adapter.fc2.weight).allSatisfy { $0 == 0 }, "\(adapter.prefix)")
            }
        }
    }

    /// The SSv2 preset's text adapters start as the identity: text embeddings equal the K400
    /// preset's (the same CLIP), the text tower alone deciding them.
    @Test func freshTextAdaptersAreTheIdentity() throws {
        let k400 = try ModelFile.load(path: try freshModelFile(.k400, name: "k.m2c"), context: context)
        let ssv2 = try ModelFile.load(path: try freshModelFile(.ssv2, name: "s.m2c"), context: context)
        expectClose(ssv2.labelEmbeddings.array, k400.labelEmbeddings.array, absTol: 1e-5, "label embeddings")
    }

    @Test func givenWordsAreTheVocabulary() throws {
        let words = ["x", "y", "z", "mask"]
        let file = try freshModelFile(.k400, mlmWords: words)
        let model = try ModelFile.load(path: file, context: context)
        #expect(model.configuration.cmlm?.words == words)
        #expect(try SafeTensorsFile(path: file).info(M2CLIPNames.MLMHead.decoderWeight)?.shape == [4, 32])
    }

    // MARK: - the MLM vocabulary

    @Test func defaultWordsAreTheReleaseWords() throws {
        #expect(MLMVocabulary.words(labels: Self.labels, promptTemplate: "A video of {}") == Self.words)
        #expect(MLMVocabulary.words(labels: ["Tab\tSeparated  Label"], promptTemplate: "{}") == ["label", "separated", "tab"])
        let shared = ModelFileTests.sharedRoot + "/data/labels/"
        guard FileManager.default.fileExists(atPath: shared + "k400_mlm_words.txt") else { return }
        let release = try MLMVocabulary.load(path: shared + "k400_mlm_words.txt")
        let ours = MLMVocabulary.words(labels: try LabelSet.load(path: shared + "kinetics_400_labels.csv"),
                                       promptTemplate: "A video of {}")
        // The release read its CSV's header as a label too: "name" is its one extra word.
        #expect(release.count == 520 && release.filter { $0 != "name" } == ours)
        #expect(try MLMVocabulary.load(path: shared + "ssv2_mlm_words.txt").count == 234)
    }

    @Test func bothFileFormsParse() throws {
        #expect(try MLMVocabulary.parse("b\n\na\nc\n", source: "w") == ["b", "a", "c"])
        #expect(try MLMVocabulary.parse("b 1\na 0\r\n  c\t2\n", source: "w") == ["a", "b", "c"])
    }

    @Test(arguments: [
        ("a 0\nb 2\n", "line 2", "index 2"),
        ("a 0\nb 0\n", "line 2", "index 0 repeats"),
        ("a\nb\na\n", "line 3", "\"a\" repeats (first on line 1)"),
        ("a 0\nb\n", "line 2", "mixes"),
        ("a 0\nb x\n", "line 2", "expected a word"),
        ("a 0 1\n", "line 1", "expected a word"),
        ("a -1\n", "line 1", "index -1"),
        ("\n\n", "", "no words"),
    ])
    func badWordFilesNameTheLine(text: String, line: String, why: String) throws {
        let file = path("words.txt")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        do {
            _ = try MLMVocabulary.load(path: file)
            Issue.record("\(text.debugDescription) parsed")
        } catch {
            #expect("\(error)".contains(file) && (line.isEmpty || "\(error)".contains(line)) && "\(error)".contains(why), "\(error)")
        }
    }

    // MARK: - the authors' release weights

    @Test func k400ReleaseLayoutImports() throws {
        let weights = try releaseStateDict(from: try freshModelFile(.k400), name: "k400.safetensors") { t in
            // Trained values, so that a copy is told from a fresh start.
            for i in t.indices where t[i].name.hasPrefix("mlm_adapter.") || t[i].name.contains("textad_fc2") {
                t[i].values = t[i].values.enumerated().map { Float($0.offset % 7) * 0.01 }
            }
        }
        let c = try Conversion.inferM2CLIP(try SafeTensorsFile(path: weights), options: .init(labels: Self.labels, clip: Self.clip))
        #expect(c.textAdapter == TextAdapterConfiguration(layers: [1], width: 24, positions: [.preMLP]))
        #expect(c.cmlm == CMLMConfiguration(adapterPositions: [.preMLP], words: Self.words))
        #expect(c.ted.positions == [.preMLP] && c.classes == 3)

        try Conversion.convert(.authors(weights: weights), options: .init(labels: Self.labels, clip: Self.clip),
                               output: path("k400.m2c"), context: context)
        let loaded = try ModelFile.load(path: path("k400.m2c"), context: context)
        #expect(loaded.configuration.cmlm == c.cmlm && loaded.configuration.textAdapter == c.textAdapter)
        let source = try SafeTensorsFile(path: weights), output = try SafeTensorsFile(path: path("k400.m2c"))
        for name in source.names where CMLMTensors.isTrainingOnly(name, textLayers: 2) {
            #expect(try output.floats(name) == source.floats(name), "\(name) kept as it was")
        }
    }

    @Test func ssv2ReleaseLayoutImports() throws {
        let weights = try releaseStateDict(from: try freshModelFile(.ssv2), name: "ssv2.safetensors")
        let options = Conversion.Options(labels: Self.labels, preset: .ssv2, clip: Self.clip)
        let c = try Conversion.inferM2CLIP(try SafeTensorsFile(path: weights), options: options)
        #expect(c.ted.positions == [.preAttention, .preMLP])
        #expect(c.textAdapter == TextAdapterConfiguration(layers: [0, 1], width: 24, positions: [.preAttention, .preMLP]))
        #expect(c.cmlm?.adapterPositions == [.preAttention, .preMLP])
        try Conversion.convert(.authors(weights: weights), options: options, output: path("ssv2.m2c"), context: context)
        let loaded = try ModelFile.load(path: path("ssv2.m2c"), context: context)
        #expect(loaded.configuration.textAdapter == c.textAdapter && loaded.configuration.cmlm == c.cmlm)
        // --preset k400 is refused for this file.
        #expect(importError(weights, options: .init(labels: Self.labels, preset: .k400, clip: Self.clip)) != nil)
    }

    @Test func irregularTextAdaptersAreRefused() throws {
        let weights = try releaseStateDict(from: try freshModelFile(.ssv2), name: "odd.safetensors") { t in
            t.removeAll { $0.name.hasPrefix("transformer.resblocks.1.adapter_pre_attn.") }
        }
        let message = try #require(importError(weights))
        #expect(message.contains("same positions") && message.contains("block 1"), "\(message)")
    }

    @Test func incompleteCMLMPartsAreRefused() throws {
        let fresh = try freshModelFile(.k400)
        let noBlock = try releaseStateDict(from: fresh, name: "noblock.safetensors") { t in
            t.removeAll { M2CLIPNames.isTextBlock($0.name, atOrAfter: 2) }
        }
        let blockMessage = try #require(importError(noBlock))
        #expect(blockMessage.contains("no CMLM block") && blockMessage.contains("mlm_adapter."), "\(blockMessage)")
        let noHead = try releaseStateDict(from: fresh, name: "nohead.safetensors") { t in
            t.removeAll { $0.name.hasPrefix("mlm_adapter.") }
        }
        #expect(try #require(importError(noHead)).contains("no MLM head"))
        let noDecoder = try releaseStateDict(from: fresh, name: "nodecoder.safetensors") { t in
            t.removeAll { $0.name == M2CLIPNames.MLMHead.decoderWeight }
        }
        #expect(try #require(importError(noDecoder)).contains("tensor mlm_adapter.decoder.weight: missing"))
        let noLayerNorm = try releaseStateDict(from: fresh, name: "noln.safetensors") { t in
            t.removeAll { $0.name == "mlm_adapter.transform.LayerNorm.bias" }
        }
        do {
            try Conversion.convert(.authors(weights: noLayerNorm), options: .init(labels: Self.labels, clip: Self.clip),
                                   output: path("noln.m2c"), context: context)
            Issue.record("converted without the MLM head's LayerNorm bias")
        } catch {
            #expect("\(error)".contains("tensor mlm_adapter.transform.LayerNorm.bias: missing"), "\(error)")
        }
    }

    @Test func decoderRowsMustMatchTheWords() throws {
        let weights = try releaseStateDict(from: try freshModelFile(.k400), name: "rows.safetensors")
        // Other labels: 6 distinct prompt words for a decoder of 7 rows.
        let other = ["running", "jumping", "swimming"]
        let vcRows = Conversion.Options(labels: other, clip: Self.clip)
        let derived = try #require(importError(weights, options: vcRows))
        #expect(derived.contains("7 rows") && derived.contains("--mlm-words"), "\(derived)")
        var given = vcRows
        given.mlmWords = ["a", "b"]
        #expect(try #require(importError(weights, options: given)).contains("--mlm-words has 2 words"))
        given.mlmWords = ["r0", "r1", "r2", "r3", "r4", "r5", "r6"]
        let c = try Conversion.inferM2CLIP(try SafeTensorsFile(path: weights), options: given)
        #expect(c.cmlm?.words == given.mlmWords)
    }

    /// Release weights without any text adapters or CMLM parts (the visual-only models) get
    /// a fresh CMLM block and head, with no adapters in the block.
    @Test func visualOnlyReleaseGetsFreshCMLMParts() throws {
        let weights = try releaseStateDict(from: try freshModelFile(.k400), name: "visual.safetensors") { t in
            t.removeAll { CMLMTensors.isTrainingOnly($0.name, textLayers: 2) || $0.name.contains(".textad_") }
        }
        try Conversion.convert(.authors(weights: weights), options: .init(labels: Self.labels, clip: Self.clip),
                               output: path("visual.m2c"), context: context)
        let c = try ModelFile.load(path: path("visual.m2c"), context: context).configuration
        #expect(c.textAdapter.layers.isEmpty)
        #expect(c.cmlm == CMLMConfiguration(adapterPositions: [], words: Self.words))
        let file = try SafeTensorsFile(path: path("visual.m2c"))
        #expect(try file.floats("transformer.resblocks.2.attn.in_proj_weight") == file.floats("transformer.resblocks.1.attn.in_proj_weight"))
    }

    /// OpenAI's widths (64-wide heads) so the sizes are read off the shapes: the last text
    /// block is the CMLM block when the head is there, or when it copies the block before.
    @Test func cmlmBlockIsNotCountedAsACLIPLayer() throws {
        let wide = CLIPConfiguration(
            projectionDim: 64,
            text: .init(hiddenSize: 64, intermediateSize: 64, heads: 1, layers: 2),
            vision: .init(hiddenSize: 64, intermediateSize: 64, heads: 1, layers: 1, imageSize: 32, patchSize: 16))
        try RandomCheckpoint.write(configuration: wide, to: path("wide"), seed: 2)
        let fresh = path("wide.m2c")
        try Conversion.convert(.huggingFace(directory: path("wide")), options: .init(labels: Self.labels),
                               output: fresh, context: context)
        let release = try releaseStateDict(from: fresh, name: "wide.safetensors")
        #expect(try Conversion.inferCLIP(try SafeTensorsFile(path: release)).text.encoder.layers == 2)
        let headless = try releaseStateDict(from: fresh, name: "headless.safetensors") { t in
            t.removeAll { $0.name.hasPrefix("mlm_adapter.") }
        }
        #expect(try Conversion.inferCLIP(try SafeTensorsFile(path: headless)).text.encoder.layers == 2)
        let clipOnly = try releaseStateDict(from: fresh, name: "clip.safetensors") { t in
            t.removeAll { CMLMTensors.isTrainingOnly($0.name, textLayers: 2) }
        }
        #expect(try Conversion.inferCLIP(try SafeTensorsFile(path: clipOnly)).text.encoder.layers == 2)
        // --openai: the file's CMLM parts are replaced by fresh ones.
        try Conversion.convert(.openAI(weights: release), options: .init(labels: Self.labels),
                               output: path("openai.m2c"), context: context)
        #expect(try ModelFile.load(path: path("openai.m2c"), context: context).configuration.cmlm?.words == Self.words)
    }

    // MARK: - model files

    /// Rewrites a model file with its tensors and configuration edited.
    func rewrite(_ modelFile: String, to name: String, tensors edit: (inout Tensors) -> Void = { _ in },
                 configuration editConfiguration: (inout M2CLIPConfiguration) -> Void = { _ in }) throws -> String {
        let file = try SafeTensorsFile(path: modelFile)
        var t = try tensors(modelFile)
        edit(&t)
        var metadata = file.metadata
        var c = try JSONDecoder().decode(M2CLIPConfiguration.self, from: Data(metadata[M2CLIPNames.Metadata.configuration]!.utf8))
        editConfiguration(&c)
        metadata[M2CLIPNames.Metadata.configuration] = String(decoding: try JSONEncoder().encode(c), as: UTF8.self)
        var writer = SafeTensorsWriter(metadata: metadata)
        for x in t { try writer.add(name: x.name, shape: x.shape, floats: x.values) }
        try writer.write(to: path(name))
        return path(name)
    }

    func loadError(_ path: String) -> String? {
        do {
            _ = try ModelFile.load(path: path, context: context)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func missingOrMismatchedCMLMTensorsAreNamedAtLoad() throws {
        let fresh = try freshModelFile(.k400)
        let noDecoder = try rewrite(fresh, to: "nodecoder.m2c") { $0.removeAll { $0.name == M2CLIPNames.MLMHead.decoderWeight } }
        let missing = try #require(loadError(noDecoder))
        #expect(missing.contains(noDecoder) && missing.contains("tensor mlm_adapter.decoder.weight: missing"), "\(missing)")

        let noBlock = try rewrite(fresh, to: "noblock.m2c") { $0.removeAll { $0.name == "transformer.resblocks.2.attn.in_proj_weight" } }
        #expect(try #require(loadError(noBlock)).contains("tensor transformer.resblocks.2.attn.in_proj_weight: missing"))

        let fewerWords = try rewrite(fresh, to: "words.m2c", configuration: { $0.cmlm?.words.removeLast() })
        let mismatch = try #require(loadError(fewerWords))
        #expect(mismatch.contains("tensor mlm_adapter.decoder.weight: has shape [7, 32], expected [6, 32]"), "\(mismatch)")

        let extra = try rewrite(fresh, to: "extra.m2c", configuration: { $0.cmlm?.adapterPositions = [] })
        #expect(try #require(loadError(extra)).contains("transformer.resblocks.2.adapter_pre_mlp.textad_fc1"))

        // Without cmlm in the configuration (files written before it), the parts are ignored.
        let older = try rewrite(fresh, to: "older.m2c", configuration: { $0.cmlm = nil })
        #expect(loadError(older) == nil)
    }

    @Test func labelsSetKeepsTheTrainingParts() throws {
        let fresh = try freshModelFile(.k400)
        let model = try ModelFile.load(path: fresh, context: context)
        try model.setLabels(["dancing", "cooking"], context: context)
        try ModelFile.updateLabels(path: fresh, model: model)
        let reloaded = try ModelFile.load(path: fresh, context: context)
        #expect(reloaded.labels == ["dancing", "cooking"] && reloaded.configuration.cmlm?.words == Self.words)
    }

    /// `m2clip train --labels`: the heads resized to the new labels and their prompts' words,
    /// known rows kept, new rows fresh, everything else byte for byte, embeddings recomputed.
    @Test func relabelResizesTheHeadsAndKeepsKnownRows() throws {
        let fresh = try freshModelFile(.k400)
        let newLabels = ["surfing", "dancing", "juggling", "playing drums"]
        let out = path("relabelled.m2c")
        let r = try ModelFile.relabel(base: fresh, to: out, labels: newLabels, seed: 5, context: context)
        #expect(r.keptLabels == ["surfing", "juggling"] && r.newLabels == ["dancing", "playing drums"])
        let words = ["a", "dancing", "drums", "juggling", "of", "playing", "surfing", "video"]
        #expect(r.keptWords == 6 && r.newWords == 2)

        let model = try ModelFile.load(path: out, context: context)
        #expect(model.labels == newLabels && model.configuration.classes == 4)
        #expect(model.configuration.cmlm?.words == words)
        #expect(!model.configuration.vcHeadTrained)
        let before = try SafeTensorsFile(path: fresh), after = try SafeTensorsFile(path: out)
        func rows(_ file: SafeTensorsFile, _ name: String) throws -> [[Float]] {
            let shape = file.info(name)!.shape, values = try file.floats(name)
            let width = shape.dropFirst().reduce(1, *)
            return (0..<shape[0]).map { Array(values[$0 * width..<($0 + 1) * width]) }
        }
        let vc = M2CLIPNames.videoClassifier.weight, decoder = M2CLIPNames.MLMHead.decoderWeight
        let oldVC = try rows(before, vc), newVC = try rows(after, vc)
        #expect(newVC[0] == oldVC[1] && newVC[2] == oldVC[0], "surfing and juggling keep their rows")
        #expect(!oldVC.contains(newVC[1]) && !oldVC.contains(newVC[3]), "new labels start fresh")
        let bound = 1 / Float(Self.clip.vision.encoder.hiddenSize).squareRoot()
        #expect(newVC[1].allSatisfy { abs($0) <= bound } && Set(newVC[1]).count > 1)
        let oldDecoder = try rows(before, decoder), newDecoder = try rows(after, decoder)
        for (k, word) in words.enumerated() {
            if let i = Self.words.firstIndex(of: word) {
                #expect(newDecoder[k] == oldDecoder[i], "\(word) keeps its decoder row")
            } else {
                #expect(!oldDecoder.contains(newDecoder[k]), "\(word) starts fresh")
            }
        }
        for name in before.names where ![vc, M2CLIPNames.videoClassifier.bias, decoder, M2CLIPNames.MLMHead.decoderBias,
                                         M2CLIPNames.labelTextEmbeddings].contains(name) {
            #expect(Array(try before.bytes(name)) == Array(try after.bytes(name)), "\(name) copied")
        }
        // the embeddings are the new labels' prompts through the text tower
        let original = try ModelFile.load(path: fresh, context: context)
        let expected = try original.labelEmbedding("playing drums", context: context)
        #expect(Array(model.labelEmbeddings.array[3 * expected.count..<4 * expected.count]) == expected)

        #expect(throws: CheckpointError.self) {
            try ModelFile.relabel(base: fresh, to: path("twice.m2c"), labels: ["a", "a"], seed: 0, context: context)
        }
    }
}
