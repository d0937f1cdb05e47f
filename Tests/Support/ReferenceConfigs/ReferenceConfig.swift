import M2Model

/// The PyTorch reference's m2clip-config (docstring of scripts/reference/m2clip_reference.py),
/// as the fixtures under Tests/Fixtures store it, turned into the engine's configuration.
public struct ReferenceConfig: Decodable, Sendable {
    public struct Tower: Decodable, Sendable {
        let width: Int, layers: Int, heads: Int
        let patchSize: Int?, imageSize: Int?, vocabSize: Int?, contextLength: Int?
    }
    public struct TED: Decodable, Sendable { let positions: [String]; let layers: [Int]; let width: Int; let te: Bool; let td: Bool }
    public struct Post: Decodable, Sendable { let enabled: Bool; let width: Int }
    public struct TextAdapter: Decodable, Sendable { let layers: [Int]; let width: Int; let positions: [String]? }
    public struct CMLM: Decodable, Sendable { let adapterPositions: [String]; let words: [String] }
    public struct Weights: Decodable, Sendable { let contrastive: Float, cmc: Float, vc: Float, mlm: Float }
    let vision: Tower, text: Tower
    let projectionDim: Int, mlpRatio: Int
    let ted: TED, postAdapter: Post, textAdapter: TextAdapter
    public let classes: Int
    let cmlm: CMLM?
    let lossWeights: Weights?

    public struct UnknownPosition: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "unknown adapter position \(name)" }
    }

    public func configuration(frames: Int) throws -> M2CLIPConfiguration {
        func positions(_ names: [String]) throws -> [TEDConfiguration.Position] {
            try names.map { guard let p = TEDConfiguration.Position(rawValue: $0) else { throw UnknownPosition(name: $0) }; return p }
        }
        let clip = CLIPConfiguration(
            projectionDim: projectionDim,
            // the reference pools text at the highest id (OpenAI): transformers' rule for eos 2
            text: CLIPTextConfiguration(hiddenSize: text.width, intermediateSize: text.width * mlpRatio,
                                        heads: text.heads, layers: text.layers, vocabSize: text.vocabSize!,
                                        maxPositions: text.contextLength!, eosTokenID: 2),
            vision: CLIPVisionConfiguration(hiddenSize: vision.width, intermediateSize: vision.width * mlpRatio,
                                            heads: vision.heads, layers: vision.layers,
                                            imageSize: vision.imageSize!, patchSize: vision.patchSize!))
        var c = M2CLIPConfiguration(
            clip: clip,
            ted: TEDConfiguration(positions: try positions(ted.positions), layers: ted.layers, width: ted.width,
                                  temporalEnhancement: ted.te, temporalDifference: ted.td),
            postAdapter: PostAdapterConfiguration(enabled: postAdapter.enabled, width: postAdapter.width),
            textAdapter: TextAdapterConfiguration(layers: textAdapter.layers, width: textAdapter.width,
                                                  positions: try positions(textAdapter.positions ?? ["preMLP"])),
            classes: classes, frames: frames, vcHeadTrained: true)
        if let cmlm { c.cmlm = CMLMConfiguration(adapterPositions: try positions(cmlm.adapterPositions), words: cmlm.words) }
        if let w = lossWeights { c.lossWeights = LossWeights(contrastive: w.contrastive, cmc: w.cmc, vc: w.vc, mlm: w.mlm) }
        return c
    }
}
