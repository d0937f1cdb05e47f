/// Every tensor name of the checkpoint formats m2clip reads lives in this file.

/// Where each tensor of a CLIP image tower lives in one checkpoint format.
struct VisionTowerNames: Sendable {
    let prefix: String
    let patchEmbedding: String
    let classEmbedding: String
    let positionEmbedding: String
    let preLayerNorm: String
    let postLayerNorm: String
    let projection: String
    let projectionLayout: ProjectionLayout
    let layer: @Sendable (Int) -> BlockNames
    let buffers: Set<String>
}

/// Where each tensor of a CLIP text tower lives in one checkpoint format.
struct TextTowerNames: Sendable {
    let tokenEmbedding: String
    let positionEmbedding: String
    let finalLayerNorm: String
    let projection: String
    let projectionLayout: ProjectionLayout
    let layer: @Sendable (Int) -> BlockNames
    let buffers: Set<String>
    /// True for names that belong to the text tower (to skip it when loading vision only).
    let owns: @Sendable (String) -> Bool
}

/// How a projection matrix is stored: (out, in) as Hugging Face, or (in, out) as OpenAI.
package enum ProjectionLayout: Sendable { case outIn, inOut }

/// Hugging Face `CLIPModel` (spec §8). Linear weights are (out, in).
enum HFCLIPNames {
    static let logitScale = "logit_scale"
    static let visualProjection = "visual_projection.weight"
    static let textProjection = "text_projection.weight"

    enum Vision {
        static let prefix = "vision_model."
        static let patchEmbedding = "vision_model.embeddings.patch_embedding.weight"
        static let classEmbedding = "vision_model.embeddings.class_embedding"
        static let positionEmbedding = "vision_model.embeddings.position_embedding.weight"
        static let preLayerNorm = "vision_model.pre_layrnorm" // sic, as transformers spells it
        static let postLayerNorm = "vision_model.post_layernorm"
        static func layer(_ i: Int) -> BlockNames { .huggingFace("vision_model.encoder.layers.\(i)") }
        /// Buffers some transformers versions save; not weights.
        static let buffers: Set<String> = ["vision_model.embeddings.position_ids"]
    }

    enum Text {
        static let prefix = "text_model."
        static let tokenEmbedding = "text_model.embeddings.token_embedding.weight"
        static let positionEmbedding = "text_model.embeddings.position_embedding.weight"
        static let finalLayerNorm = "text_model.final_layer_norm"
        static func layer(_ i: Int) -> BlockNames { .huggingFace("text_model.encoder.layers.\(i)") }
        static let buffers: Set<String> = ["text_model.embeddings.position_ids"]
    }

    static let vision = VisionTowerNames(
        prefix: Vision.prefix, patchEmbedding: Vision.patchEmbedding,
        classEmbedding: Vision.classEmbedding, positionEmbedding: Vision.positionEmbedding,
        preLayerNorm: Vision.preLayerNorm, postLayerNorm: Vision.postLayerNorm,
        projection: visualProjection, projectionLayout: .outIn, layer: Vision.layer,
        buffers: Vision.buffers)

    static let text = TextTowerNames(
        tokenEmbedding: Text.tokenEmbedding, positionEmbedding: Text.positionEmbedding,
        finalLayerNorm: Text.finalLayerNorm, projection: textProjection, projectionLayout: .outIn,
        layer: Text.layer, buffers: Text.buffers,
        owns: { $0.hasPrefix(Text.prefix) || $0 == textProjection })
}

/// OpenAI CLIP names (spec §8), which the authors' M²-CLIP release and m2clip's model files
/// build on. Projections are (in, out); attention has one fused in-projection.
package enum OpenAICLIPNames {
    package static let logitScale = "logit_scale"
    package static let visualPrefix = "visual."

    package static func block(_ p: String) -> BlockNames {
        BlockNames(attention: .fused(weight: "\(p).attn.in_proj_weight", bias: "\(p).attn.in_proj_bias"),
                   outProjection: "\(p).attn.out_proj", layerNorm1: "\(p).ln_1",
                   layerNorm2: "\(p).ln_2", fc1: "\(p).mlp.c_fc", fc2: "\(p).mlp.c_proj")
    }

    package static func visualBlock(_ i: Int) -> String { "visual.transformer.resblocks.\(i)" }
    package static func textBlock(_ i: Int) -> String { "transformer.resblocks.\(i)" }

    static let vision = VisionTowerNames(
        prefix: visualPrefix, patchEmbedding: "visual.conv1.weight",
        classEmbedding: "visual.class_embedding", positionEmbedding: "visual.positional_embedding",
        preLayerNorm: "visual.ln_pre", postLayerNorm: "visual.ln_post", projection: "visual.proj",
        projectionLayout: .inOut, layer: { block(visualBlock($0)) }, buffers: [])

    static let text = TextTowerNames(
        tokenEmbedding: "token_embedding.weight", positionEmbedding: "positional_embedding",
        finalLayerNorm: "ln_final", projection: "text_projection", projectionLayout: .inOut,
        layer: { block(textBlock($0)) }, buffers: [],
        owns: { !$0.hasPrefix(visualPrefix) && $0 != logitScale })
}

extension TEDConfiguration.Position {
    /// The release's module name for the position.
    package var moduleName: String { self == .preAttention ? "adapter_pre_attn" : "adapter_pre_mlp" }
}

/// The authors' M²-CLIP release on top of the OpenAI names (spec §8), which is also the
/// naming inside m2clip's `.m2c` model files.
package enum M2CLIPNames {
    package typealias AdapterPosition = TEDConfiguration.Position

    /// TED-Adapter in visual block `layer` at `position`: TE is fc1 → conv → fc2, TD is
    /// offset_adapter.{fc1, conv, fc2}.
    package struct TEDAdapter {
        package let prefix: String
        package var teFC1: String { prefix + ".fc1" }
        package var teConv: String { prefix + ".conv" }
        package var teFC2: String { prefix + ".fc2" }
        package var tdFC1: String { prefix + ".offset_adapter.fc1" }
        package var tdConv: String { prefix + ".offset_adapter.conv" }
        package var tdFC2: String { prefix + ".offset_adapter.fc2" }
    }

    package static func ted(layer: Int, position: AdapterPosition) -> TEDAdapter {
        TEDAdapter(prefix: "\(OpenAICLIPNames.visualBlock(layer)).\(position.moduleName)")
    }

    package static let postAdapterFC1 = "visual.t_adapter.fc1"
    package static let postAdapterConv = "visual.t_adapter.conv"
    package static let postAdapterFC2 = "visual.t_adapter.fc2"
    package static let videoClassifier = "visual.adapter_fc"

    /// Text adapter in text block `layer` (block `text layers` is the CMLM block) at `position`.
    package struct TextAdapter {
        package let prefix: String
        package var fc1: String { prefix + ".textad_fc1" }
        package var fc2: String { prefix + ".textad_fc2" }
    }

    package static func textAdapter(layer: Int, position: AdapterPosition) -> TextAdapter {
        TextAdapter(prefix: "\(OpenAICLIPNames.textBlock(layer)).\(position.moduleName)")
    }

    /// Training-only parts of the release that inference skips: the CMLM head and the CMLM
    /// cross-attention block (the text block after the last CLIP one).
    package static let mlmPrefix = "mlm_adapter."

    /// The CMLM block of a text tower with `textLayers` CLIP blocks: text block `textLayers`.
    package static func cmlmBlock(textLayers: Int) -> BlockNames {
        OpenAICLIPNames.block(OpenAICLIPNames.textBlock(textLayers))
    }

    /// The BERT-style MLM head (spec §8): dense → GELU → LayerNorm(1e-12) → decoder + bias.
    package enum MLMHead {
        package static let dense = "mlm_adapter.transform.dense"
        package static let layerNorm = "mlm_adapter.transform.LayerNorm"
        package static let decoderWeight = "mlm_adapter.decoder.weight"
        package static let decoderBias = "mlm_adapter.bias"
        package static let layerNormEps: Float = 1e-12
    }

    /// True for the adapters' and heads' tensors (what training changes): the release's rule
    /// `'adapter' in name` (spec §9), spelled out for its module names. Every trainer, the
    /// parameter counts and the adapters-only export (`AdapterFile`) ask this one function.
    package static func isTrainable(_ name: String) -> Bool {
        name.contains(".adapter_pre_") || name.hasPrefix("visual.t_adapter.")
            || name.hasPrefix(videoClassifier + ".") || name.hasPrefix(mlmPrefix)
    }

    /// True for the text adapters' tensors (spec §6: they train at half the learning rate).
    package static func isTextAdapter(_ name: String) -> Bool { name.contains(".textad_") }

    /// True for tensors of text block `index ≥ first` (the release's CMLM block 12).
    package static func isTextBlock(_ name: String, atOrAfter first: Int) -> Bool {
        let prefix = "transformer.resblocks."
        guard name.hasPrefix(prefix) else { return false }
        let rest = name.dropFirst(prefix.count)
        guard let index = Int(rest.prefix { $0.isNumber }) else { return false }
        return index >= first
    }

    /// The per-channel scales of an int8 weight.
    package static func scale(of weight: String) -> String { weight + "_scale" }

    /// m2clip's own tensors in a model file.
    package static let labelTextEmbeddings = "m2clip.label_text_embeds"

    /// True for m2clip's own tensors, which the release's state dict does not have.
    package static func isM2CLIPOnly(_ name: String) -> Bool { name.hasPrefix("m2clip.") }

    /// `__metadata__` keys of a model file.
    package enum Metadata {
        package static let format = "m2clip.format"
        package static let configuration = "m2clip.config"
        package static let labels = "m2clip.labels"
        package static let tokenizerVocabulary = "m2clip.tokenizer.vocab_json"
        package static let tokenizerMerges = "m2clip.tokenizer.merges_txt"
        /// An adapters-only file (`m2clip export --adapters`): its format version, and the
        /// SHA-256 fingerprint of the frozen base it was trained on (`AdapterFile.fingerprint`).
        package static let adaptersFormat = "m2clip.adapters.format"
        package static let baseFingerprint = "m2clip.base.sha256"
    }
}

/// The names of one pre-LN transformer block. Prefixes take ".weight" / ".bias".
package struct BlockNames {
    package enum Attention {
        /// Separate q/k/v projections (Hugging Face).
        case separate(q: String, k: String, v: String)
        /// One fused (3d, d) in-projection (OpenAI `in_proj_weight` / `in_proj_bias`).
        case fused(weight: String, bias: String)
    }

    package let attention: Attention
    package let outProjection: String
    package let layerNorm1: String
    package let layerNorm2: String
    package let fc1: String
    package let fc2: String

    package static func huggingFace(_ p: String) -> BlockNames {
        BlockNames(
            attention: .separate(q: "\(p).self_attn.q_proj", k: "\(p).self_attn.k_proj",
                                 v: "\(p).self_attn.v_proj"),
            outProjection: "\(p).self_attn.out_proj",
            layerNorm1: "\(p).layer_norm1", layerNorm2: "\(p).layer_norm2",
            fc1: "\(p).mlp.fc1", fc2: "\(p).mlp.fc2")
    }
}

extension String {
    package var weight: String { self + ".weight" }
    package var bias: String { self + ".bias" }
}
