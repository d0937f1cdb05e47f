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

        public init(labels: [String], preset: M2CLIPConfiguration.Preset? = nil, tedLayers: [Int]? = nil,
                    tedPositions: [TEDConfiguration.Position]? = nil, frames: Int = 8,
                    promptTemplate: String = "A video of {}", tokenizerDirectory: String? = nil, seed: UInt64 = 0,
                    clip: CLIPConfiguration? = nil) {
            self.clip = clip
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

    /// Converts and writes `output`; returns the loaded model.
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
            store = try copy(file, keeping: { !$0.hasPrefix(M2CLIPNames.mlmPrefix) })
            configuration = try freshConfiguration(clip: clip, options: options)
            try addFreshAdapters(to: store, configuration: configuration, seed: options.seed)
            checkpointDirectory = URL(fileURLWithPath: weights).deletingLastPathComponent().path
        case .authors(let weights):
            let file = try open(weights)
            configuration = try inferM2CLIP(file, options: options)
            store = try copy(file, keeping: { _ in true })
            checkpointDirectory = URL(fileURLWithPath: weights).deletingLastPathComponent().path
        }
        let tokenizer = try TokenizerFileContents.locate(checkpointDirectory: checkpointDirectory,
                                                         fallback: options.tokenizerDirectory)
        configuration.frames = options.frames
        configuration.promptTemplate = options.promptTemplate
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
        var c = M2CLIPConfiguration.preset(options.preset ?? .k400, clip: clip, classes: options.labels.count,
                                           vcHeadTrained: false)
        if let layers = options.tedLayers { c.ted.layers = layers }
        if let positions = options.tedPositions { c.ted.positions = positions }
        return c
    }

    /// OpenAI CLIP's sizes from its tensors' shapes, as OpenAI's `build_model` reads them
    /// (64-wide heads). The release's extra text block (CMLM) is not counted.
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
        if file.names.contains(where: { $0.hasPrefix(M2CLIPNames.mlmPrefix) }) { textLayers -= 1 }
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

    /// The configuration of a release state dict, read off its tensor names and shapes.
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
        var textLayers: [Int] = [], textWidth = 0
        for layer in 0..<clip.text.encoder.layers where file.contains(M2CLIPNames.textAdapter(layer: layer, position: .preMLP).fc1 + ".weight") {
            textLayers.append(layer)
            textWidth = file.info(M2CLIPNames.textAdapter(layer: layer, position: .preMLP).fc1 + ".weight")!.shape[0]
        }
        let classes = file.info(M2CLIPNames.videoClassifier + ".weight")?.shape.first ?? 0
        if classes > 0 && classes != options.labels.count {
            throw CheckpointError(file: file.path, tensor: M2CLIPNames.videoClassifier + ".weight",
                                  "the VC head has \(classes) classes but the label file has \(options.labels.count)")
        }
        return M2CLIPConfiguration(
            clip: clip,
            ted: TEDConfiguration(positions: positions, layers: layers.sorted(), width: width,
                                  temporalEnhancement: te, temporalDifference: td),
            postAdapter: PostAdapterConfiguration(enabled: postWidth != nil, width: postWidth ?? 0),
            textAdapter: TextAdapterConfiguration(layers: textLayers, width: textWidth),
            classes: classes, vcHeadTrained: classes > 0)
    }

    // MARK: - fresh adapters

    /// Adapters initialised as the release does, so the model starts as plain CLIP averaged
    /// over frames: depthwise convs zero, fc biases zero, fc weights Kaiming-uniform
    /// (PyTorch's Linear default, U(±1/√fan_in)). The text adapter's fc2 starts at zero so it
    /// too is the identity. The VC head gets PyTorch's Linear default and is untrained.
    static func addFreshAdapters(to store: TensorStore, configuration c: M2CLIPConfiguration, seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        func uniform(_ count: Int, bound: Float) -> [Float] {
            (0..<count).map { _ in (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) * bound }
        }
        func linear(_ prefix: String, in inFeatures: Int, out: Int, zeroWeight: Bool = false, defaultBias: Bool = false) {
            let bound = 1 / Float(inFeatures).squareRoot()
            store.set(prefix + ".weight", shape: [out, inFeatures],
                      values: zeroWeight ? [Float](repeating: 0, count: out * inFeatures) : uniform(out * inFeatures, bound: bound))
            store.set(prefix + ".bias", shape: [out],
                      values: defaultBias ? uniform(out, bound: bound) : [Float](repeating: 0, count: out))
        }
        func zeroConv(_ prefix: String, shape: [Int]) {
            store.set(prefix + ".weight", shape: shape, values: [Float](repeating: 0, count: shape.reduce(1, *)))
            store.set(prefix + ".bias", shape: [shape[0]], values: [Float](repeating: 0, count: shape[0]))
        }
        let d = c.clip.vision.encoder.hiddenSize, r = c.ted.width, p = c.clip.projectionDim
        if !c.ted.isEmpty {
            for layer in c.ted.layers {
                for position in c.ted.positions {
                    let n = M2CLIPNames.ted(layer: layer, position: position)
                    if c.ted.temporalEnhancement {
                        linear(n.teFC1, in: d, out: r)
                        zeroConv(n.teConv, shape: [r, 1, 3])
                        linear(n.teFC2, in: r, out: d)
                    }
                    if c.ted.temporalDifference {
                        linear(n.tdFC1, in: d, out: r)
                        zeroConv(n.tdConv, shape: [r, 1, 1, 3, 3])
                        linear(n.tdFC2, in: r, out: d)
                    }
                }
            }
        }
        if c.postAdapter.enabled {
            let w = c.postAdapter.width
            linear(M2CLIPNames.postAdapterFC1, in: p, out: w)
            zeroConv(M2CLIPNames.postAdapterConv, shape: [w, 1, 3])
            linear(M2CLIPNames.postAdapterFC2, in: w, out: p)
        }
        let dt = c.clip.text.encoder.hiddenSize
        for layer in c.textAdapter.layers {
            linear(M2CLIPNames.textAdapter(layer: layer, position: .preMLP).fc1, in: dt, out: c.textAdapter.width)
            linear(M2CLIPNames.textAdapter(layer: layer, position: .preMLP).fc2, in: c.textAdapter.width, out: dt, zeroWeight: true)
        }
        if c.classes > 0 {
            linear(M2CLIPNames.videoClassifier, in: d, out: c.classes, defaultBias: true)
        }
    }
}
