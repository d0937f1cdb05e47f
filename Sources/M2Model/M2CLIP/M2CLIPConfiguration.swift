import Foundation

/// Everything about an M²-CLIP model that is not a weight (spec §1–4), stored as JSON in a
/// model file's `__metadata__`. Every choice the paper and the public release disagree on is
/// a field here.
public struct M2CLIPConfiguration: Codable, Sendable, Equatable {
    /// The CLIP backbone's sizes.
    public var clip: CLIPConfiguration
    public var ted: TEDConfiguration
    public var postAdapter: PostAdapterConfiguration
    public var textAdapter: TextAdapterConfiguration
    /// Outputs of the supervised VC head; 0 when the model has none.
    public var classes: Int
    /// Frames per clip the model was trained with (the default sampling length).
    public var frames: Int
    /// Prompt of the class text embeddings; `{}` stands for the label.
    public var promptTemplate: String
    /// False when the VC head has never been trained (a model built from plain CLIP): then
    /// classification defaults to zero-shot.
    public var vcHeadTrained: Bool
    /// How the weights were quantized; nil for fp32 files.
    public var quantization: QuantizationInfo?
    /// The CMLM block and MLM head that training uses (spec §4); nil when the file has none.
    /// Inference never reads them.
    public var cmlm: CMLMConfiguration?
    /// Weights of the training losses; nil: the paper's total (spec §4).
    public var lossWeights: LossWeights?

    public init(clip: CLIPConfiguration, ted: TEDConfiguration, postAdapter: PostAdapterConfiguration,
                textAdapter: TextAdapterConfiguration, classes: Int, frames: Int = 8,
                promptTemplate: String = "A video of {}", vcHeadTrained: Bool) {
        self.clip = clip
        self.ted = ted
        self.postAdapter = postAdapter
        self.textAdapter = textAdapter
        self.classes = classes
        self.frames = frames
        self.promptTemplate = promptTemplate
        self.vcHeadTrained = vcHeadTrained
    }

    /// The prompt for one label.
    public func prompt(for label: String) -> String {
        promptTemplate.replacingOccurrences(of: "{}", with: label)
    }

    /// Checks the fields against each other; errors name the field.
    public func validate(source: String) throws {
        func check(_ ok: Bool, _ field: String, _ why: String) throws {
            if !ok { throw CheckpointError(file: source, "field \(field): \(why)") }
        }
        // the CLIP sizes first: a model file's metadata is as untrusted as a config.json
        // (a zero patch size there once reached a division below; found by fuzzing)
        try clip.validate(file: source)
        let layers = clip.vision.encoder.layers
        try check(ted.layers.allSatisfy { (0..<layers).contains($0) }, "ted.layers",
                  "\(ted.layers) has a layer outside 0..<\(layers)")
        try check(Set(ted.layers).count == ted.layers.count, "ted.layers", "repeats a layer")
        try check(ted.layers.isEmpty || ted.width > 0, "ted.width", "must be positive")
        try check(Set(ted.positions).count == ted.positions.count, "ted.positions", "repeats a position")
        try check(!postAdapter.enabled || postAdapter.width > 0, "postAdapter.width", "must be positive")
        let textLayers = clip.text.encoder.layers
        try check(textAdapter.layers.allSatisfy { (0..<textLayers).contains($0) }, "textAdapter.layers",
                  "\(textAdapter.layers) has a layer outside 0..<\(textLayers)")
        try check(textAdapter.layers.isEmpty || textAdapter.width > 0, "textAdapter.width", "must be positive")
        try check(Set(textAdapter.positions).count == textAdapter.positions.count, "textAdapter.positions",
                  "repeats a position")
        if let cmlm {
            try check(clip.projectionDim == clip.text.encoder.hiddenSize, "cmlm",
                      "the CMLM block attends from text width \(clip.text.encoder.hiddenSize) to video embeddings of \(clip.projectionDim)")
            try check(!cmlm.words.isEmpty, "cmlm.words", "the MLM vocabulary is empty")
            try check(cmlm.adapterPositions.isEmpty || textAdapter.width > 0, "textAdapter.width",
                      "must be positive for the CMLM block's adapters")
            try check(Set(cmlm.adapterPositions).count == cmlm.adapterPositions.count, "cmlm.adapterPositions",
                      "repeats a position")
        }
        try check(classes >= 0, "classes", "must not be negative")
        try check(frames >= 1, "frames", "must be at least 1")
        try check(promptTemplate.contains("{}"), "promptTemplate", "must contain {} for the label")
        let grid = clip.vision.imageSize / clip.vision.patchSize
        try check(grid * grid == clip.vision.patches, "clip.vision", "patch grid is not square")
    }
}

/// What `m2clip quantize` did to a model file.
public struct QuantizationInfo: Codable, Sendable, Equatable {
    /// "int8": symmetric, one scale per output channel; activations per token at run time.
    public var scheme: String
    /// Kinds of weights stored in int8 (qkv, out_proj, mlp).
    public var operations: [String]
    /// Image-tower blocks kept in fp32 (e.g. for outlier channels).
    public var fp32Layers: [Int]

    public init(scheme: String, operations: [String], fp32Layers: [Int]) {
        self.scheme = scheme
        self.operations = operations
        self.fp32Layers = fp32Layers
    }
}

/// TED-Adapters in the image tower (spec §2).
public struct TEDConfiguration: Codable, Sendable, Equatable {
    /// Before which sub-block of a block an adapter sits.
    public enum Position: String, Codable, Sendable, CaseIterable {
        case preAttention, preMLP
    }

    /// Before which sub-blocks an adapter sits.
    public var positions: [Position]
    /// Which blocks have adapters.
    public var layers: [Int]
    /// Bottleneck width r.
    public var width: Int
    /// The TE branch (temporal enhancement) is present.
    public var temporalEnhancement: Bool
    /// The TD branch (temporal difference) is present.
    public var temporalDifference: Bool

    public init(positions: [Position], layers: [Int], width: Int, temporalEnhancement: Bool = true,
                temporalDifference: Bool = true) {
        self.positions = positions
        self.layers = layers
        self.width = width
        self.temporalEnhancement = temporalEnhancement
        self.temporalDifference = temporalDifference
    }

    public var isEmpty: Bool { positions.isEmpty || layers.isEmpty || !(temporalEnhancement || temporalDifference) }
}

/// The temporal adapter after the visual projection (public release; spec §2).
public struct PostAdapterConfiguration: Codable, Sendable, Equatable {
    public var enabled: Bool
    public var width: Int

    public init(enabled: Bool, width: Int) {
        self.enabled = enabled
        self.width = width
    }
}

/// Text adapters in some text blocks (spec §3), before the FFN and/or before attention.
public struct TextAdapterConfiguration: Codable, Sendable, Equatable {
    public var layers: [Int]
    public var width: Int
    /// Before which sub-blocks of each of `layers` an adapter sits. Files written before this
    /// field existed had pre-FFN adapters only.
    public var positions: [TEDConfiguration.Position]

    public init(layers: [Int], width: Int, positions: [TEDConfiguration.Position] = [.preMLP]) {
        self.layers = layers
        self.width = width
        self.positions = positions
    }

    enum CodingKeys: String, CodingKey { case layers, width, positions }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        layers = try c.decode([Int].self, forKey: .layers)
        width = try c.decode(Int.self, forKey: .width)
        positions = try c.decodeIfPresent([TEDConfiguration.Position].self, forKey: .positions) ?? [.preMLP]
    }
}

/// The CMLM decoder of spec §4 (training only): a frozen copy of the last text block used as
/// cross-attention from the prompt tokens to the T frame embeddings, its text adapters, and a
/// BERT-style MLM head over a word vocabulary.
public struct CMLMConfiguration: Codable, Sendable, Equatable {
    /// Text adapters inside the CMLM block (the release: preMLP for K400, both for SSv2);
    /// their width is `textAdapter.width`.
    public var adapterPositions: [TEDConfiguration.Position]
    /// The MLM vocabulary: decoder row k predicts `words[k]`.
    public var words: [String]

    public init(adapterPositions: [TEDConfiguration.Position], words: [String]) {
        self.adapterPositions = adapterPositions
        self.words = words
    }
}

/// Weights of the four training losses (spec §4): total =
/// (contrastive · (KL_v2t + KL_t2v)/2 + cmc · CE_cmc)/2 + vc · CE_vc + mlm · CE_mlm.
/// The defaults are the paper's total.
public struct LossWeights: Codable, Sendable, Equatable {
    public var contrastive: Float
    public var cmc: Float
    public var vc: Float
    public var mlm: Float

    public init(contrastive: Float = 1, cmc: Float = 1, vc: Float = 1, mlm: Float = 0.1) {
        self.contrastive = contrastive
        self.cmc = cmc
        self.vc = vc
        self.mlm = mlm
    }

    public static let paper = LossWeights()
}

extension M2CLIPConfiguration {
    /// The public release's adapter placements (spec §2, §3): K400 puts the TED-Adapter before
    /// the FFN of every block and text adapters before the FFN of the last text block and the
    /// CMLM block; SSv2 puts both kinds before both sub-blocks of every block (the CMLM
    /// block's included).
    public enum Preset: String, CaseIterable, Sendable {
        case k400, ssv2

        /// TED-Adapter positions.
        public var positions: [TEDConfiguration.Position] {
            self == .k400 ? [.preMLP] : [.preAttention, .preMLP]
        }

        /// Text adapter positions, in the CLIP text blocks and in the CMLM block.
        public var textAdapterPositions: [TEDConfiguration.Position] {
            self == .k400 ? [.preMLP] : [.preAttention, .preMLP]
        }

        /// The CLIP text blocks with text adapters, of `layers`: the last (K400) or all (SSv2).
        public func textAdapterLayers(_ layers: Int) -> [Int] {
            self == .k400 ? [layers - 1] : Array(0..<layers)
        }
    }

    /// The release's recipe on a CLIP backbone: r = 384 for width 768 (half the width in
    /// general), post adapter 256, text adapters of width 3/4 of the text width placed as
    /// `preset` says. No CMLM parts: they need an MLM vocabulary (`Conversion` adds them).
    public static func preset(_ preset: Preset, clip: CLIPConfiguration, classes: Int,
                              vcHeadTrained: Bool) -> M2CLIPConfiguration {
        M2CLIPConfiguration(
            clip: clip,
            ted: TEDConfiguration(positions: preset.positions,
                                  layers: Array(0..<clip.vision.encoder.layers),
                                  width: clip.vision.encoder.hiddenSize / 2),
            postAdapter: PostAdapterConfiguration(enabled: true, width: clip.projectionDim / 2),
            textAdapter: TextAdapterConfiguration(layers: preset.textAdapterLayers(clip.text.encoder.layers),
                                                  width: clip.text.encoder.hiddenSize * 3 / 4,
                                                  positions: preset.textAdapterPositions),
            classes: classes, vcHeadTrained: vcHeadTrained)
    }
}
