/// Every tensor name of the checkpoint formats m2clip reads lives in this file.
///
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
}

/// The names of one pre-LN transformer block. Prefixes take ".weight" / ".bias".
struct BlockNames {
    enum Attention {
        /// Separate q/k/v projections (Hugging Face).
        case separate(q: String, k: String, v: String)
        /// One fused (3d, d) in-projection (OpenAI `in_proj_weight` / `in_proj_bias`).
        case fused(weight: String, bias: String)
    }

    let attention: Attention
    let outProjection: String
    let layerNorm1: String
    let layerNorm2: String
    let fc1: String
    let fc2: String

    static func huggingFace(_ p: String) -> BlockNames {
        BlockNames(
            attention: .separate(q: "\(p).self_attn.q_proj", k: "\(p).self_attn.k_proj",
                                 v: "\(p).self_attn.v_proj"),
            outProjection: "\(p).self_attn.out_proj",
            layerNorm1: "\(p).layer_norm1", layerNorm2: "\(p).layer_norm2",
            fc1: "\(p).mlp.fc1", fc2: "\(p).mlp.fc2")
    }
}

extension String {
    var weight: String { self + ".weight" }
    var bias: String { self + ".bias" }
}
