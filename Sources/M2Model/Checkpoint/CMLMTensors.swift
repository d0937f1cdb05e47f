/// The tensors of the training-only CMLM parts (spec §4, §8): the CMLM block (text block
/// `text layers`, a frozen copy of the last CLIP text block), its text adapters, and the MLM
/// head. Inference never reads them; a model file whose configuration claims them must hold
/// every one, with the shape the configuration implies.
package enum CMLMTensors {
    /// Every tensor the configuration's CMLM parts consist of, with its shape; empty when
    /// `c.cmlm` is nil.
    package static func shapes(_ c: M2CLIPConfiguration) -> [(name: String, shape: [Int])] {
        guard let cmlm = c.cmlm else { return [] }
        let t = c.clip.text.encoder, d = t.hiddenSize, inner = t.intermediateSize
        let r = c.textAdapter.width, words = cmlm.words.count
        var out: [(name: String, shape: [Int])] = []
        let block = M2CLIPNames.cmlmBlock(textLayers: t.layers)
        if case .fused(let weight, let bias) = block.attention {
            out += [(weight, [3 * d, d]), (bias, [3 * d])]
        }
        out += [(block.outProjection.weight, [d, d]), (block.outProjection.bias, [d]),
                (block.layerNorm1.weight, [d]), (block.layerNorm1.bias, [d]),
                (block.layerNorm2.weight, [d]), (block.layerNorm2.bias, [d]),
                (block.fc1.weight, [inner, d]), (block.fc1.bias, [inner]),
                (block.fc2.weight, [d, inner]), (block.fc2.bias, [d])]
        for position in TEDConfiguration.Position.allCases where cmlm.adapterPositions.contains(position) {
            let a = M2CLIPNames.textAdapter(layer: t.layers, position: position)
            out += [(a.fc1.weight, [r, d]), (a.fc1.bias, [r]), (a.fc2.weight, [d, r]), (a.fc2.bias, [d])]
        }
        typealias H = M2CLIPNames.MLMHead
        out += [(H.dense.weight, [d, d]), (H.dense.bias, [d]),
                (H.layerNorm.weight, [d]), (H.layerNorm.bias, [d]),
                (H.decoderWeight, [words, d]), (H.decoderBias, [words])]
        return out
    }

    /// True for a tensor of the training-only parts: the MLM head (`mlm_adapter.*`) or a text
    /// block at or after `textLayers` (the CMLM block and its adapters).
    package static func isTrainingOnly(_ name: String, textLayers: Int) -> Bool {
        name.hasPrefix(M2CLIPNames.mlmPrefix) || M2CLIPNames.isTextBlock(name, atOrAfter: textLayers)
    }

    /// Checks that `source` holds exactly the CMLM tensors `c` claims, with their shapes: a
    /// missing, mis-shaped or unexpected one is an error naming it. Files without CMLM parts
    /// in their configuration are not checked (inference skips such tensors).
    static func check(_ source: TensorSource, configuration c: M2CLIPConfiguration) throws {
        guard let cmlm = c.cmlm else { return }
        let expected = shapes(c)
        for (name, shape) in expected {
            guard let stored = source.shape(of: name) else {
                throw CheckpointError(file: source.origin, tensor: name,
                                      "missing (the configuration has the CMLM block and MLM head of \(cmlm.words.count) words)")
            }
            guard stored == shape else {
                let why = name == M2CLIPNames.MLMHead.decoderWeight || name == M2CLIPNames.MLMHead.decoderBias
                    ? " (\(cmlm.words.count) words in cmlm.words)" : ""
                throw CheckpointError(file: source.origin, tensor: name, "has shape \(stored), expected \(shape)\(why)")
            }
        }
        let names = Set(expected.map(\.name))
        let textLayers = c.clip.text.encoder.layers
        for name in source.tensorNames where isTrainingOnly(name, textLayers: textLayers) && !names.contains(name) {
            throw CheckpointError(file: source.origin, tensor: name, "unexpected (not part of this model's CMLM block or MLM head)")
        }
    }
}
