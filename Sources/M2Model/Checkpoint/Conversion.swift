import Foundation
import Ops
import SafeTensors

/// Builds m2clip model files from the checkpoints users have (spec §8): a Hugging Face CLIP
/// directory, OpenAI-named CLIP weights, or a state dict of the authors' M²-CLIP release.
public enum Conversion {
    public enum Source: Sendable {
        /// `config.json` + `model.safetensors` (+ vocab.json, merges.txt).
        case huggingFace(directory: String)
        /// A safetensors file of OpenAI CLIP's state dict.
        case openAI(weights: String)
        /// A safetensors file of the authors' M²-CLIP state dict.
        case authors(weights: String)
    }

    public struct Options: Sendable {
        public var labels: [String]
        /// Adapter placement for CLIP sources; for the authors' weights, the placement the
        /// file must have (nil: whatever it has).
        public var preset: M2CLIPConfiguration.Preset?
        /// Overrides of the preset's TED placement (for CLIP sources).
        public var tedLayers: [Int]?
        public var tedPositions: [TEDConfiguration.Position]?
        public var frames: Int
        public var promptTemplate: String
        /// A directory with vocab.json and merges.txt when the checkpoint has none.
        public var tokenizerDirectory: String?
        /// Seed of the fresh adapter initialisation.
        public var seed: UInt64
        /// The CLIP sizes of OpenAI-named or release weights, instead of reading them off the
        /// tensors' shapes (which assumes OpenAI's 64-wide heads).
        public var clip: CLIPConfiguration?
        /// The MLM head's vocabulary (`MLMVocabulary.load`); nil: the words of the labels'
        /// prompts (`MLMVocabulary.words`). For release weights it must have as many words as
        /// the file's MLM decoder has rows.
        public var mlmWords: [String]?

        public init(labels: [String], preset: M2CLIPConfiguration.Preset? = nil, tedLayers: [Int]? = nil,
                    tedPositions: [TEDConfiguration.Position]? = nil, frames: Int = 8,
                    promptTemplate: String = "A video of {}", tokenizerDirectory: String? = nil, seed: UInt64 = 0,
                    clip: CLIPConfiguration? = nil, mlmWords: [String]? = nil) {
            self.clip = clip
            self.mlmWords = mlmWords
            self.labels = labels
            self.preset = preset
            self.tedLayers = tedLayers
            self.tedPositions = tedPositions
            self.frames = frames
            self.promptTemplate = promptTemplate
            self.tokenizerDirectory = tokenizerDirectory
            self.seed = seed
        }
    }

    /// Converts and writes `output`; returns the loaded model. Every model file keeps what
    /// training needs: the CMLM block, its text adapters and the MLM head (spec §4) come from
    /// release weights that have them and are created for every other source (the block as a
    /// copy of the last CLIP text block, adapters as the identity, a fresh head), unless the
    /// CLIP's video embeddings are not as wide as its text tokens (no OpenAI CLIP).
    @discardableResult
    public static func convert(_ source: Source, options: Options, output: String,
                               context: ComputeContext) throws -> M2CLIPModel {
        let store: TensorStore
        var configuration: M2CLIPConfiguration
        let checkpointDirectory: String
        switch source {
        case .huggingFace(let directory):
            let clip = try CLIPConfiguration.load(path: URL(fileURLWithPath: directory).appendingPathComponent("config.json").path)
            store = try renameHuggingFace(try HuggingFaceWeights.open(directory: directory), clip: clip)
            configuration = try freshConfiguration(clip: clip, options: options)
            try addFreshAdapters(to: store, configuration: configuration, seed: options.seed)
            checkpointDirectory = directory
        case .openAI(let weights):
            let file = try open(weights)
            let clip = try options.clip ?? inferCLIP(file)
            let textLayers = clip.text.encoder.layers
            store = try copy(file, keeping: { !CMLMTensors.isTrainingOnly($0, textLayers: textLayers) })
            configuration = try freshConfiguration(clip: clip, options: options)
            try addFreshAdapters(to: store, configuration: configuration, seed: options.seed)
            checkpointDirectory = URL(fileURLWithPath: weights).deletingLastPathComponent().path
        case .authors(let weights):
            let file = try open(weights)
            // An m2clip export (`ReleaseExport`) carries its configuration: its MLM words and CLIP
            // sizes unless given, and whether its VC head was trained, which the tensors cannot say.
            let carried = try ReleaseExport.carried(file)
            var options = options
            if options.mlmWords == nil { options.mlmWords = carried?.configuration.cmlm?.words }
            if options.clip == nil { options.clip = carried?.configuration.clip }
            configuration = try inferM2CLIP(file, options: options)
            if let carried, configuration.classes == carried.configuration.classes {
                configuration.vcHeadTrained = carried.configuration.vcHeadTrained
            }
            store = try copy(file, keeping: { _ in true })
            if configuration.cmlm != nil && !hasCMLMParts(file, textLayers: configuration.clip.text.encoder.layers) {
                var fresh = FreshWeights(store: store, seed: options.seed)
                fresh.addCMLM(configuration)
            }
            checkpointDirectory = URL(fileURLWithPath: weights).deletingLastPathComponent().path
        }
        let tokenizer = try TokenizerFileContents.locate(checkpointDirectory: checkpointDirectory,
                                                         fallback: options.tokenizerDirectory)
        configuration.frames = options.frames
        configuration.promptTemplate = options.promptTemplate
        try configuration.validate(source: store.origin)
        try CMLMTensors.check(store, configuration: configuration)
        let model = try M2CLIPModel(configuration: configuration, reader: WeightReader(source: store),
                                    tokenizerFiles: tokenizer, labels: options.labels, labelEmbeddings: nil,
                                    context: context)
        try ModelFile.write(path: output, model: model, weights: store)
        return model
    }

    static func open(_ path: String) throws -> SafeTensorsFile {
        do {
            return try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: error.tensor, error.message)
        }
    }

    static func copy(_ file: SafeTensorsFile, keeping keep: (String) -> Bool) throws -> TensorStore {
        let store = TensorStore(origin: file.path)
        for name in file.names where keep(name) {
            do {
                store.set(name, shape: file.info(name)!.shape, values: try file.floats(name))
            } catch let error as SafeTensorsError {
                throw CheckpointError(file: file.path, tensor: name, error.message)
            }
        }
        return store
    }

    // MARK: - Hugging Face → release names

    /// Hugging Face CLIPModel tensors under OpenAI names: q/k/v fused into in_proj,
    /// projections transposed to (in, out). Shapes are checked against `clip` on the way.
    static func renameHuggingFace(_ file: TensorSource, clip: CLIPConfiguration) throws -> TensorStore {
        let reader = WeightReader(source: file)
        let store = TensorStore(origin: file.origin)
        func move(_ from: String, _ to: String, _ shape: [Int]) throws {
            store.set(to, shape: shape, values: try reader.floats(from, shape: shape))
        }
        func moveNorm(_ from: String, _ to: String, _ width: Int) throws {
            try move(from + ".weight", to + ".weight", [width])
            try move(from + ".bias", to + ".bias", [width])
        }
        func moveTransposed(_ from: String, _ to: String, out: Int, in inFeatures: Int) throws {
            let w = try reader.floats(from, shape: [out, inFeatures])
            var t = [Float](repeating: 0, count: w.count)
            for o in 0..<out { for i in 0..<inFeatures { t[i * out + o] = w[o * inFeatures + i] } }
            store.set(to, shape: [inFeatures, out], values: t)
        }
        func moveBlocks(_ from: (Int) -> BlockNames, _ to: (Int) -> BlockNames, _ e: EncoderShape) throws {
            let d = e.hiddenSize, inner = e.intermediateSize
            for i in 0..<e.layers {
                let src = from(i), dst = to(i)
                guard case .separate(let q, let k, let v) = src.attention,
                      case .fused(let weight, let bias) = dst.attention else { fatalError("HF → OpenAI block names") }
                var w: [Float] = [], b: [Float] = []
                for p in [q, k, v] {
                    w += try reader.floats(p + ".weight", shape: [d, d])
                    b += try reader.floats(p + ".bias", shape: [d])
                }
                store.set(weight, shape: [3 * d, d], values: w)
                store.set(bias, shape: [3 * d], values: b)
                try move(src.outProjection + ".weight", dst.outProjection + ".weight", [d, d])
                try move(src.outProjection + ".bias", dst.outProjection + ".bias", [d])
                try moveNorm(src.layerNorm1, dst.layerNorm1, d)
                try moveNorm(src.layerNorm2, dst.layerNorm2, d)
                try move(src.fc1 + ".weight", dst.fc1 + ".weight", [inner, d])
                try move(src.fc1 + ".bias", dst.fc1 + ".bias", [inner])
                try move(src.fc2 + ".weight", dst.fc2 + ".weight", [d, inner])
                try move(src.fc2 + ".bias", dst.fc2 + ".bias", [d])
            }
        }
        let hv = HFCLIPNames.vision, ov = OpenAICLIPNames.vision, v = clip.vision
        let dv = v.encoder.hiddenSize, p = clip.projectionDim
        try move(hv.patchEmbedding, ov.patchEmbedding, [dv, v.channels, v.patchSize, v.patchSize])
        try move(hv.classEmbedding, ov.classEmbedding, [dv])
        try move(hv.positionEmbedding, ov.positionEmbedding, [v.tokens, dv])
        try moveNorm(hv.preLayerNorm, ov.preLayerNorm, dv)
        try moveBlocks(hv.layer, ov.layer, v.encoder)
        try moveNorm(hv.postLayerNorm, ov.postLayerNorm, dv)
        try moveTransposed(hv.projection, ov.projection, out: p, in: dv)
        let ht = HFCLIPNames.text, ot = OpenAICLIPNames.text, t = clip.text
        let dt = t.encoder.hiddenSize
        try move(ht.tokenEmbedding, ot.tokenEmbedding, [t.vocabSize, dt])
        try move(ht.positionEmbedding, ot.positionEmbedding, [t.maxPositions, dt])
        try moveBlocks(ht.layer, ot.layer, t.encoder)
        try moveNorm(ht.finalLayerNorm, ot.finalLayerNorm, dt)
        try moveTransposed(ht.projection, ot.projection, out: p, in: dt)
        store.set(OpenAICLIPNames.logitScale, shape: [], values: try reader.floats(HFCLIPNames.logitScale, shape: []))
        try reader.finish { hv.buffers.contains($0) || ht.buffers.contains($0) }
        return store
    }

    // MARK: - configurations

    static func freshConfiguration(clip: CLIPConfiguration, options: Options) throws -> M2CLIPConfiguration {
        let preset = options.preset ?? .k400
        var c = M2CLIPConfiguration.preset(preset, clip: clip, classes: options.labels.count, vcHeadTrained: false)
        if let layers = options.tedLayers { c.ted.layers = layers }
        if let positions = options.tedPositions { c.ted.positions = positions }
        if canHaveCMLM(clip) {
            c.cmlm = CMLMConfiguration(adapterPositions: preset.textAdapterPositions,
                                       words: options.mlmWords ?? labelWords(options))
        } else if options.mlmWords != nil {
            throw CheckpointError(file: "--mlm-words", cmlmWidthProblem(clip))
        }
        return c
    }

    /// The CMLM block attends from the text tokens to the per-frame video embeddings, so both
    /// must be equally wide (every OpenAI CLIP: 512 or 768).
    static func canHaveCMLM(_ clip: CLIPConfiguration) -> Bool {
        clip.projectionDim == clip.text.encoder.hiddenSize
    }

    static func cmlmWidthProblem(_ clip: CLIPConfiguration) -> String {
        "the CMLM block cannot attend from text tokens of width \(clip.text.encoder.hiddenSize) to video embeddings of width \(clip.projectionDim)"
    }

    /// The default MLM vocabulary: the words of the labels' prompts.
    static func labelWords(_ options: Options) -> [String] {
        MLMVocabulary.words(labels: options.labels, promptTemplate: options.promptTemplate)
    }

    /// True when the file has the release's CMLM block or MLM head (text block `textLayers`,
    /// `mlm_adapter.*`).
    static func hasCMLMParts(_ file: SafeTensorsFile, textLayers: Int) -> Bool {
        file.names.contains { CMLMTensors.isTrainingOnly($0, textLayers: textLayers) }
    }

    /// OpenAI CLIP's sizes from its tensors' shapes, as OpenAI's `build_model` reads them
    /// (64-wide heads). The release's extra text block (CMLM) is not counted: the last text
    /// block is the CMLM block when the file has the MLM head (`mlm_adapter.*`) or when that
    /// block is a copy of the one before it (the release never trains it; two CLIP blocks are
    /// never equal).
    static func inferCLIP(_ file: SafeTensorsFile) throws -> CLIPConfiguration {
        func shape(_ name: String) throws -> [Int] {
            guard let s = file.info(name)?.shape else { throw CheckpointError(file: file.path, tensor: name, "missing") }
            return s
        }
        func count(_ block: (Int) -> String) -> Int {
            var n = 0
            while file.contains(block(n) + ".attn.in_proj_weight") { n += 1 }
            return n
        }
        let conv = try shape(OpenAICLIPNames.vision.patchEmbedding)
        let positions = try shape(OpenAICLIPNames.vision.positionEmbedding)
        let proj = try shape(OpenAICLIPNames.vision.projection)
        guard conv.count == 4, positions.count == 2, proj.count == 2 else {
            throw CheckpointError(file: file.path, tensor: OpenAICLIPNames.vision.patchEmbedding,
                                  "unexpected shapes for an OpenAI CLIP image tower: conv \(conv), positions \(positions), proj \(proj)")
        }
        let grid = Int(Double(positions[0] - 1).squareRoot().rounded())
        let visionWidth = conv[0], patch = conv[3]
        let visionInner = try shape(OpenAICLIPNames.visualBlock(0) + ".mlp.c_fc.weight")[0]
        let textWidth = try shape(OpenAICLIPNames.text.finalLayerNorm + ".weight")[0]
        let vocab = try shape(OpenAICLIPNames.text.tokenEmbedding)[0]
        let context = try shape(OpenAICLIPNames.text.positionEmbedding)[0]
        let textInner = try shape(OpenAICLIPNames.textBlock(0) + ".mlp.c_fc.weight")[0]
        var textLayers = count(OpenAICLIPNames.textBlock)
        let hasHead = file.names.contains { $0.hasPrefix(M2CLIPNames.mlmPrefix) }
        if textLayers >= 2, try hasHead || isCopy(file, textBlock: textLayers - 1, of: textLayers - 2) {
            textLayers -= 1
        }
        guard visionWidth % 64 == 0, textWidth % 64 == 0 else {
            throw CheckpointError(file: file.path, "widths \(visionWidth)/\(textWidth) are not multiples of 64 (OpenAI head size)")
        }
        return CLIPConfiguration(
            projectionDim: proj[1],
            // OpenAI pools the text at the highest token id: transformers' legacy rule for
            // eos_token_id 2, which TextTower follows.
            text: CLIPTextConfiguration(hiddenSize: textWidth, intermediateSize: textInner, heads: textWidth / 64,
                                        layers: textLayers, vocabSize: vocab, maxPositions: context, eosTokenID: 2),
            vision: CLIPVisionConfiguration(hiddenSize: visionWidth, intermediateSize: visionInner,
                                            heads: visionWidth / 64, layers: count(OpenAICLIPNames.visualBlock),
                                            imageSize: grid * patch, patchSize: patch))
    }

    /// True when every frozen tensor of text block `copy` equals that of block `original`.
    static func isCopy(_ file: SafeTensorsFile, textBlock copy: Int, of original: Int) throws -> Bool {
        for name in blockTensorNames(OpenAICLIPNames.block(OpenAICLIPNames.textBlock(original))) {
            let copyName = OpenAICLIPNames.textBlock(copy) + name.dropFirst(OpenAICLIPNames.textBlock(original).count)
            guard let a = file.info(name), let b = file.info(copyName), a.shape == b.shape else { return false }
            do {
                if try file.floats(name) != file.floats(copyName) { return false }
            } catch let error as SafeTensorsError {
                throw CheckpointError(file: file.path, tensor: error.tensor, error.message)
            }
        }
        return true
    }

    /// The weights and biases of one OpenAI-named block.
    static func blockTensorNames(_ block: BlockNames) -> [String] {
        var names: [String] = []
        if case .fused(let weight, let bias) = block.attention { names += [weight, bias] }
        for p in [block.outProjection, block.layerNorm1, block.layerNorm2, block.fc1, block.fc2] {
            names += [p.weight, p.bias]
        }
        return names
    }

    /// The configuration of a release state dict, read off its tensor names and shapes
    /// (every layout of spec §3: text adapters before attention and/or the FFN, the CMLM
    /// block and the MLM head). Text adapters must sit at the same positions in every CLIP
    /// text block that has them.
    static func inferM2CLIP(_ file: SafeTensorsFile, options: Options) throws -> M2CLIPConfiguration {
        let clip = try options.clip ?? inferCLIP(file)
        var positions: [TEDConfiguration.Position] = [], layers: [Int] = []
        var width = 0, te = false, td = false
        for layer in 0..<clip.vision.encoder.layers {
            for position in TEDConfiguration.Position.allCases {
                let names = M2CLIPNames.ted(layer: layer, position: position)
                let hasTE = file.contains(names.teFC1 + ".weight"), hasTD = file.contains(names.tdFC1 + ".weight")
                guard hasTE || hasTD else { continue }
                if !positions.contains(position) { positions.append(position) }
                if !layers.contains(layer) { layers.append(layer) }
                te = te || hasTE
                td = td || hasTD
                width = file.info((hasTE ? names.teFC1 : names.tdFC1) + ".weight")!.shape[0]
            }
        }
        positions.sort { $0.rawValue < $1.rawValue }
        if let preset = options.preset, !layers.isEmpty, Set(positions) != Set(preset.positions) {
            throw CheckpointError(file: file.path, "--preset \(preset.rawValue) expects TED-Adapters at \(preset.positions.map(\.rawValue)), the file has them at \(positions.map(\.rawValue))")
        }
        let postWidth = file.info(M2CLIPNames.postAdapterFC1 + ".weight")?.shape.first

        // Text adapters: the CLIP blocks 0..<L, then the CMLM block L.
        let textLayers = clip.text.encoder.layers
        var textWidth = 0
        func textAdapterPositions(_ layer: Int) -> [TEDConfiguration.Position] {
            TEDConfiguration.Position.allCases.filter { position in
                let names = M2CLIPNames.textAdapter(layer: layer, position: position)
                if let shape = file.info(names.fc1.weight)?.shape, textWidth == 0 { textWidth = shape[0] }
                return file.contains(names.fc1.weight) || file.contains(names.fc2.weight)
            }
        }
        var adapted: [(layer: Int, positions: [TEDConfiguration.Position])] = []
        for layer in 0..<textLayers {
            let found = textAdapterPositions(layer)
            if !found.isEmpty { adapted.append((layer, found)) }
        }
        let textPositions = adapted.first?.positions ?? []
        if let odd = adapted.first(where: { $0.positions != textPositions }) {
            throw CheckpointError(file: file.path, "text adapters must sit at the same positions in every adapted text block: block \(adapted[0].layer) has \(textPositions.map(\.rawValue)), block \(odd.layer) has \(odd.positions.map(\.rawValue))")
        }
        if let preset = options.preset, !adapted.isEmpty, Set(textPositions) != Set(preset.textAdapterPositions) {
            throw CheckpointError(file: file.path, "--preset \(preset.rawValue) expects text adapters at \(preset.textAdapterPositions.map(\.rawValue)), the file has them at \(textPositions.map(\.rawValue))")
        }
        if let beyond = file.names.first(where: { M2CLIPNames.isTextBlock($0, atOrAfter: textLayers + 1) }) {
            throw CheckpointError(file: file.path, tensor: beyond,
                                  "unexpected: the text tower has \(textLayers) CLIP blocks and the CMLM block \(textLayers), nothing after")
        }

        let classes = file.info(M2CLIPNames.videoClassifier + ".weight")?.shape.first ?? 0
        if classes > 0 && classes != options.labels.count {
            throw CheckpointError(file: file.path, tensor: M2CLIPNames.videoClassifier + ".weight",
                                  "the VC head has \(classes) classes but the label file has \(options.labels.count)")
        }
        var c = M2CLIPConfiguration(
            clip: clip,
            ted: TEDConfiguration(positions: positions, layers: layers.sorted(), width: width,
                                  temporalEnhancement: te, temporalDifference: td),
            postAdapter: PostAdapterConfiguration(enabled: postWidth != nil, width: postWidth ?? 0),
            textAdapter: TextAdapterConfiguration(layers: adapted.map(\.layer), width: textWidth,
                                                  positions: textPositions),
            classes: classes, vcHeadTrained: classes > 0)
        let cmlmAdapterPositions = textAdapterPositions(textLayers)
        c.textAdapter.width = textWidth // also read off the CMLM block's adapters
        c.cmlm = try inferCMLM(file, clip: clip, adapterPositions: cmlmAdapterPositions.isEmpty ? nil : cmlmAdapterPositions,
                               textAdapterPositions: textPositions, options: options)
        return c
    }

    /// The CMLM parts of a release state dict: the CMLM block (text block L) with the
    /// adapters it has (`adapterPositions`), and the MLM head, whose decoder rows must match
    /// the vocabulary. A file with neither gets fresh ones (adapters at the CLIP text
    /// adapters' positions); one with only one of the two is incomplete.
    static func inferCMLM(_ file: SafeTensorsFile, clip: CLIPConfiguration,
                          adapterPositions: [TEDConfiguration.Position]?,
                          textAdapterPositions: [TEDConfiguration.Position],
                          options: Options) throws -> CMLMConfiguration? {
        let textLayers = clip.text.encoder.layers
        let block = file.names.first { M2CLIPNames.isTextBlock($0, atOrAfter: textLayers) }
        let head = file.names.first { $0.hasPrefix(M2CLIPNames.mlmPrefix) }
        switch (block, head) {
        case (nil, nil):
            guard canHaveCMLM(clip) else {
                if options.mlmWords != nil { throw CheckpointError(file: file.path, "--mlm-words: " + cmlmWidthProblem(clip)) }
                return nil
            }
            return CMLMConfiguration(adapterPositions: textAdapterPositions,
                                     words: options.mlmWords ?? labelWords(options))
        case (let block?, nil):
            throw CheckpointError(file: file.path, tensor: block,
                                  "the file has the CMLM block (text block \(textLayers)) but no MLM head (\(M2CLIPNames.mlmPrefix)*): incomplete")
        case (nil, let head?):
            throw CheckpointError(file: file.path, tensor: head,
                                  "the file has the MLM head but no CMLM block (text block \(textLayers)): incomplete")
        case (_?, _?):
            guard canHaveCMLM(clip) else {
                throw CheckpointError(file: file.path, "the file has the CMLM block and MLM head, but " + cmlmWidthProblem(clip))
            }
            let decoder = M2CLIPNames.MLMHead.decoderWeight
            guard let rows = file.info(decoder)?.shape.first else {
                throw CheckpointError(file: file.path, tensor: decoder, "missing (the file has other \(M2CLIPNames.mlmPrefix)* tensors)")
            }
            let words: [String]
            if let given = options.mlmWords {
                guard given.count == rows else {
                    throw CheckpointError(file: file.path, tensor: decoder,
                                          "the MLM decoder has \(rows) rows but --mlm-words has \(given.count) words")
                }
                words = given
            } else {
                let derived = labelWords(options)
                guard derived.count == rows else {
                    throw CheckpointError(file: file.path, tensor: decoder,
                                          "the MLM decoder has \(rows) rows but the labels' prompts have \(derived.count) distinct words: pass --mlm-words with the release's word list (e.g. k400_mlm_words.txt)")
                }
                words = derived
            }
            return CMLMConfiguration(adapterPositions: adapterPositions ?? [], words: words)
        }
    }

    // MARK: - fresh weights

    /// Adapters initialised as the release does, so the model starts as plain CLIP averaged
    /// over frames: depthwise convs zero, fc biases zero, fc weights Kaiming-uniform
    /// (PyTorch's Linear default, U(±1/√fan_in)). The text adapters' fc2 starts at zero so
    /// they too are the identity. The VC head gets PyTorch's Linear default and is untrained.
    /// Then the CMLM parts, when the configuration has them (`FreshWeights.addCMLM`).
    static func addFreshAdapters(to store: TensorStore, configuration c: M2CLIPConfiguration, seed: UInt64) throws {
        var fresh = FreshWeights(store: store, seed: seed)
        let d = c.clip.vision.encoder.hiddenSize, r = c.ted.width, p = c.clip.projectionDim
        if !c.ted.isEmpty {
            for layer in c.ted.layers {
                for position in c.ted.positions {
                    let n = M2CLIPNames.ted(layer: layer, position: position)
                    if c.ted.temporalEnhancement {
                        fresh.linear(n.teFC1, in: d, out: r)
                        fresh.zeroConv(n.teConv, shape: [r, 1, 3])
                        fresh.linear(n.teFC2, in: r, out: d)
                    }
                    if c.ted.temporalDifference {
                        fresh.linear(n.tdFC1, in: d, out: r)
                        fresh.zeroConv(n.tdConv, shape: [r, 1, 1, 3, 3])
                        fresh.linear(n.tdFC2, in: r, out: d)
                    }
                }
            }
        }
        if c.postAdapter.enabled {
            let w = c.postAdapter.width
            fresh.linear(M2CLIPNames.postAdapterFC1, in: p, out: w)
            fresh.zeroConv(M2CLIPNames.postAdapterConv, shape: [w, 1, 3])
            fresh.linear(M2CLIPNames.postAdapterFC2, in: w, out: p)
        }
        for layer in c.textAdapter.layers {
            for position in c.textAdapter.positions {
                fresh.textAdapter(M2CLIPNames.textAdapter(layer: layer, position: position), c)
            }
        }
        if c.classes > 0 {
            fresh.linear(M2CLIPNames.videoClassifier, in: d, out: c.classes, defaultBias: true)
        }
        fresh.addCMLM(c)
    }

    /// Fresh tensors into a store, from one seeded stream.
    struct FreshWeights {
        let store: TensorStore
        var rng: SplitMix64

        init(store: TensorStore, seed: UInt64) {
            self.store = store
            rng = SplitMix64(seed: seed)
        }

        mutating func uniform(_ count: Int, bound: Float) -> [Float] {
            (0..<count).map { _ in (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) * bound }
        }

        /// PyTorch's Linear default: weight and bias U(±1/√fan_in); here the bias is zero
        /// unless `defaultBias`, and the weight zero when `zeroWeight`.
        mutating func linear(_ prefix: String, in inFeatures: Int, out: Int, zeroWeight: Bool = false,
                             defaultBias: Bool = false) {
            let bound = 1 / Float(inFeatures).squareRoot()
            store.set(prefix.weight, shape: [out, inFeatures],
                      values: zeroWeight ? [Float](repeating: 0, count: out * inFeatures) : uniform(out * inFeatures, bound: bound))
            store.set(prefix.bias, shape: [out],
                      values: defaultBias ? uniform(out, bound: bound) : [Float](repeating: 0, count: out))
        }

        func zeroConv(_ prefix: String, shape: [Int]) {
            store.set(prefix.weight, shape: shape, values: [Float](repeating: 0, count: shape.reduce(1, *)))
            store.set(prefix.bias, shape: [shape[0]], values: [Float](repeating: 0, count: shape[0]))
        }

        /// A text adapter that starts as the identity: fc1 default, fc2 zero.
        mutating func textAdapter(_ names: M2CLIPNames.TextAdapter, _ c: M2CLIPConfiguration) {
            let dt = c.clip.text.encoder.hiddenSize
            linear(names.fc1, in: dt, out: c.textAdapter.width)
            linear(names.fc2, in: c.textAdapter.width, out: dt, zeroWeight: true)
        }

        /// The CMLM parts of spec §4 when `c.cmlm` is set: the CMLM block as a copy of the
        /// last CLIP text block (already in the store), its text adapters as the identity, and
        /// the MLM head as BERT initialises it: dense with PyTorch's Linear default, LayerNorm
        /// weight 1 and bias 0, decoder weight Linear default, decoder bias 0.
        mutating func addCMLM(_ c: M2CLIPConfiguration) {
            guard let cmlm = c.cmlm else { return }
            let textLayers = c.clip.text.encoder.layers, dt = c.clip.text.encoder.hiddenSize
            let last = OpenAICLIPNames.textBlock(textLayers - 1), copy = OpenAICLIPNames.textBlock(textLayers)
            for name in Conversion.blockTensorNames(OpenAICLIPNames.block(last)) {
                guard let entry = store.entry(name) else { continue } // missing: named at the check
                store.set(copy + name.dropFirst(last.count), shape: entry.shape, values: entry.values)
            }
            for position in cmlm.adapterPositions {
                textAdapter(M2CLIPNames.textAdapter(layer: textLayers, position: position), c)
            }
            typealias H = M2CLIPNames.MLMHead
            linear(H.dense, in: dt, out: dt, defaultBias: true)
            store.set(H.layerNorm.weight, shape: [dt], values: [Float](repeating: 1, count: dt))
            store.set(H.layerNorm.bias, shape: [dt], values: [Float](repeating: 0, count: dt))
            let bound = 1 / Float(dt).squareRoot()
            store.set(H.decoderWeight, shape: [cmlm.words.count, dt], values: uniform(cmlm.words.count * dt, bound: bound))
            store.set(H.decoderBias, shape: [cmlm.words.count], values: [Float](repeating: 0, count: cmlm.words.count))
        }
    }
}
