import Ops

public struct TextInputError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// CLIP's text tower: token + position embeddings, causal encoder, final LayerNorm at the
/// EOT position, projection. Sequences run unpadded: with a causal mask, tokens after EOT
/// cannot change the pooled output, so padding would only cost time.
public final class TextTower: @unchecked Sendable {
    public let configuration: CLIPTextConfiguration
    public let projectionDim: Int
    package let tokenEmbedding: EmbeddingTable // (vocab, d)
    package let positionEmbedding: [Float] // (positions, d)
    package let encoder: TransformerEncoder
    package let finalLayerNorm: LayerNorm
    package let projection: Linear         // (proj ← d), no bias

    init(configuration c: CLIPTextConfiguration, projectionDim: Int, names n: TextTowerNames,
         reader: WeightReader, adapters: [Int: BlockAdapters] = [:], context: ComputeContext) throws {
        configuration = c
        self.projectionDim = projectionDim
        let d = c.encoder.hiddenSize
        tokenEmbedding = try reader.embeddingTable(n.tokenEmbedding, rows: c.vocabSize, width: d)
        positionEmbedding = try reader.floats(n.positionEmbedding, shape: [c.maxPositions, d])
        encoder = try TransformerEncoder(shape: c.encoder, names: n.layer, reader: reader,
                                         adapters: adapters, context: context)
        finalLayerNorm = try reader.layerNorm(n.finalLayerNorm, width: d, epsilon: c.encoder.layerNormEps)
        projection = try reader.projection(n.projection, layout: n.projectionLayout, in: d,
                                           out: projectionDim, context: context)
    }

    /// The position pooled into the text embedding, as transformers picks it: the first EOT
    /// (or, for legacy configs whose eos_token_id is 2, the first highest id).
    package func pooledIndex(_ ids: [Int32]) -> Int {
        if configuration.eosTokenID == 2 {
            let top = ids.max() ?? 0
            return ids.firstIndex(of: top) ?? 0
        }
        return ids.firstIndex(of: Int32(configuration.eosTokenID)) ?? 0
    }

    /// The projected text embedding (not normalised) of one token sequence.
    public func callAsFunction(ids: [Int32], context: ComputeContext) throws -> [Float] {
        let c = configuration, d = c.encoder.hiddenSize
        guard !ids.isEmpty, ids.count <= c.maxPositions else {
            throw TextInputError(description: "text has \(ids.count) tokens; the model takes 1...\(c.maxPositions)")
        }
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw TextInputError(description: "token id \(bad) is outside the vocabulary of \(c.vocabSize)")
        }
        let x = Tensor(shape: [ids.count, d])
        for (i, id) in ids.enumerated() {
            let row = x.data + i * d, position = i * d
            for j in 0..<d { row[j] = positionEmbedding[position + j] }
            tokenEmbedding.add(row: Int(id), to: row)
        }
        encoder(x, layout: SequenceLayout(clips: 1, frames: 1, tokens: ids.count), causal: true,
                context: context, times: nil)
        let pooled = Tensor(shape: [1, d])
        finalLayerNorm(x.data + pooledIndex(ids) * d, rows: 1, into: pooled.data, context: context)
        let out = Tensor(shape: [1, projectionDim])
        projection(pooled.data, rows: 1, into: out.data, context: context)
        return out.array
    }
}
