import Foundation

/// The configuration of a CLIP model, decoded from a Hugging Face `config.json`.
///
/// `save_pretrained` writes only the values that differ from transformers' defaults, so
/// every field falls back to the default of `CLIPConfig` / `CLIPTextConfig` /
/// `CLIPVisionConfig` (ViT-B/32 numbers) when absent.
public struct CLIPConfiguration: Codable, Sendable, Equatable {
    public var projectionDim: Int
    public var logitScaleInitValue: Float
    public var text: CLIPTextConfiguration
    public var vision: CLIPVisionConfiguration

    enum CodingKeys: String, CodingKey {
        case projectionDim = "projection_dim"
        case logitScaleInitValue = "logit_scale_init_value"
        case text = "text_config"
        case vision = "vision_config"
    }

    public init(projectionDim: Int = 512, logitScaleInitValue: Float = 2.6592,
                text: CLIPTextConfiguration = .init(), vision: CLIPVisionConfiguration = .init()) {
        self.projectionDim = projectionDim
        self.logitScaleInitValue = logitScaleInitValue
        self.text = text
        self.vision = vision
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) ?? 512
        logitScaleInitValue = try c.decodeIfPresent(Float.self, forKey: .logitScaleInitValue) ?? 2.6592
        text = try c.decodeIfPresent(CLIPTextConfiguration.self, forKey: .text) ?? .init()
        vision = try c.decodeIfPresent(CLIPVisionConfiguration.self, forKey: .vision) ?? .init()
    }

    /// Reads and validates `config.json`; errors name the file and the field.
    public static func load(path: String) throws -> CLIPConfiguration {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CheckpointError(file: path, "cannot read: \(error.localizedDescription)")
        }
        let config: CLIPConfiguration
        do {
            config = try JSONDecoder().decode(CLIPConfiguration.self, from: data)
        } catch let error as DecodingError {
            throw CheckpointError(file: path, CheckpointError.describe(error))
        }
        try config.validate(file: path)
        return config
    }

    func validate(file: String) throws {
        func check(_ ok: Bool, _ field: String, _ why: String) throws {
            if !ok { throw CheckpointError(file: file, "field \(field): \(why)") }
        }
        try check(projectionDim > 0, "projection_dim", "must be positive, got \(projectionDim)")
        for (tower, t) in [("text_config", text.encoder), ("vision_config", vision.encoder)] {
            try check(t.hiddenSize > 0, "\(tower).hidden_size", "must be positive, got \(t.hiddenSize)")
            try check(t.heads > 0 && t.hiddenSize % t.heads == 0, "\(tower).num_attention_heads",
                      "\(t.heads) does not divide hidden_size \(t.hiddenSize)")
            try check(t.intermediateSize > 0, "\(tower).intermediate_size", "must be positive")
            try check(t.layers >= 0, "\(tower).num_hidden_layers", "must not be negative")
            try check(t.layerNormEps > 0, "\(tower).layer_norm_eps", "must be positive")
            try check(t.activation != nil, "\(tower).hidden_act",
                      "\"\(t.hiddenAct)\" is not supported (quick_gelu, gelu)")
        }
        try check(vision.patchSize > 0 && vision.imageSize % vision.patchSize == 0,
                  "vision_config.patch_size", "\(vision.patchSize) does not divide image_size \(vision.imageSize)")
        try check(vision.channels > 0, "vision_config.num_channels", "must be positive")
        try check(text.vocabSize > 0, "text_config.vocab_size", "must be positive")
        try check(text.maxPositions > 1, "text_config.max_position_embeddings", "must be at least 2")
    }
}

/// Sizes shared by both towers' transformer encoders.
public struct EncoderShape: Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var heads: Int
    public var layers: Int
    public var hiddenAct: String
    public var layerNormEps: Float

    public var headDim: Int { hiddenSize / heads }

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case heads = "num_attention_heads", layers = "num_hidden_layers"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps"
    }

    /// Decodes the encoder fields that sit beside a tower's own fields in its config object.
    static func decode(from decoder: Decoder, defaults d: EncoderShape) throws -> EncoderShape {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        return EncoderShape(
            hiddenSize: try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize,
            intermediateSize: try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize,
            heads: try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads,
            layers: try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers,
            hiddenAct: try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct,
            layerNormEps: try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? d.layerNormEps)
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(heads, forKey: .heads)
        try c.encode(layers, forKey: .layers)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(layerNormEps, forKey: .layerNormEps)
    }

    var activation: Ops.Activation? {
        switch hiddenAct {
        case "quick_gelu": return .quickGELU
        case "gelu": return .gelu
        default: return nil
        }
    }
}

public struct CLIPTextConfiguration: Codable, Sendable, Equatable {
    public var encoder: EncoderShape
    public var vocabSize: Int
    public var maxPositions: Int
    public var eosTokenID: Int
    public var bosTokenID: Int

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", maxPositions = "max_position_embeddings"
        case eosTokenID = "eos_token_id", bosTokenID = "bos_token_id"
    }

    public init(hiddenSize: Int = 512, intermediateSize: Int = 2048, heads: Int = 8,
                layers: Int = 12, hiddenAct: String = "quick_gelu", layerNormEps: Float = 1e-5,
                vocabSize: Int = 49408, maxPositions: Int = 77, eosTokenID: Int = 49407,
                bosTokenID: Int = 49406) {
        encoder = EncoderShape(hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                               heads: heads, layers: layers, hiddenAct: hiddenAct,
                               layerNormEps: layerNormEps)
        self.vocabSize = vocabSize
        self.maxPositions = maxPositions
        self.eosTokenID = eosTokenID
        self.bosTokenID = bosTokenID
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = CLIPTextConfiguration()
        encoder = try EncoderShape.decode(from: decoder, defaults: d.encoder)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        maxPositions = try c.decodeIfPresent(Int.self, forKey: .maxPositions) ?? d.maxPositions
        eosTokenID = try c.decodeIfPresent(Int.self, forKey: .eosTokenID) ?? d.eosTokenID
        bosTokenID = try c.decodeIfPresent(Int.self, forKey: .bosTokenID) ?? d.bosTokenID
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try self.encoder.encode(to: encoder)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositions, forKey: .maxPositions)
        try c.encode(eosTokenID, forKey: .eosTokenID)
        try c.encode(bosTokenID, forKey: .bosTokenID)
    }
}

public struct CLIPVisionConfiguration: Codable, Sendable, Equatable {
    public var encoder: EncoderShape
    public var imageSize: Int
    public var patchSize: Int
    public var channels: Int

    /// Patches per frame (M) and tokens per frame (1 + M).
    public var patches: Int { (imageSize / patchSize) * (imageSize / patchSize) }
    public var tokens: Int { patches + 1 }

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", patchSize = "patch_size", channels = "num_channels"
    }

    public init(hiddenSize: Int = 768, intermediateSize: Int = 3072, heads: Int = 12,
                layers: Int = 12, hiddenAct: String = "quick_gelu", layerNormEps: Float = 1e-5,
                imageSize: Int = 224, patchSize: Int = 32, channels: Int = 3) {
        encoder = EncoderShape(hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                               heads: heads, layers: layers, hiddenAct: hiddenAct,
                               layerNormEps: layerNormEps)
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.channels = channels
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = CLIPVisionConfiguration()
        encoder = try EncoderShape.decode(from: decoder, defaults: d.encoder)
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? d.channels
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try self.encoder.encode(to: encoder)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(channels, forKey: .channels)
    }
}

import Ops
