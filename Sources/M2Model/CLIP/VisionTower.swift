import Ops

/// CLIP's image tower over a batch of frames: patch embedding (a GEMM over im2col
/// patches), CLS and positions, ln_pre, the encoder, ln_post on CLS, projection.
/// Frames are independent sequences here; they only meet in M²-CLIP's adapters.
public final class VisionTower: @unchecked Sendable {
    public let configuration: CLIPVisionConfiguration
    public let projectionDim: Int
    package let patchEmbedding: Linear     // (d ← C·p·p), no bias
    package let classEmbedding: [Float]    // (d)
    package let positionEmbedding: Tensor  // (1+M, d)
    package let preLayerNorm: LayerNorm
    package let encoder: TransformerEncoder
    package let postLayerNorm: LayerNorm
    package let projection: Linear         // (proj ← d), no bias

    init(configuration c: CLIPVisionConfiguration, projectionDim: Int, names n: VisionTowerNames,
         reader: WeightReader, adapters: [Int: BlockAdapters] = [:], context: ComputeContext) throws {
        configuration = c
        self.projectionDim = projectionDim
        let d = c.encoder.hiddenSize, p = c.patchSize
        patchEmbedding = try reader.flattenedLinear(n.patchEmbedding, shape: [d, c.channels, p, p],
                                                    in: c.channels * p * p, out: d, context: context)
        classEmbedding = try reader.floats(n.classEmbedding, shape: [d])
        positionEmbedding = Tensor(shape: [c.tokens, d],
                                   values: try reader.floats(n.positionEmbedding, shape: [c.tokens, d]))
        preLayerNorm = try reader.layerNorm(n.preLayerNorm, width: d, epsilon: c.encoder.layerNormEps)
        encoder = try TransformerEncoder(shape: c.encoder, names: n.layer, reader: reader,
                                         adapters: adapters, context: context)
        postLayerNorm = try reader.layerNorm(n.postLayerNorm, width: d, epsilon: c.encoder.layerNormEps)
        projection = try reader.projection(n.projection, layout: n.projectionLayout, in: d,
                                           out: projectionDim, context: context)
    }

    /// The encoder output before ln_post (transformers' `last_hidden_state`).
    /// - Parameter pixels: (frames, C, S, S), normalised.
    /// - Returns: (frames, 1+M, d).
    public func hiddenStates(pixels: UnsafePointer<Float>, frames: Int, context: ComputeContext,
                             times: StageTimes? = nil) -> Tensor {
        encode(pixels: pixels, clips: frames, framesPerClip: 1, firstTokenOnly: false,
               context: context, times: times)
    }

    /// Patch embedding (a GEMM over im2col patches), CLS, positions and ln_pre: the encoder's
    /// input. - Parameter pixels: (frames, C, S, S). - Returns: (frames, 1+M, d).
    package func embed(pixels: UnsafePointer<Float>, frames: Int, context: ComputeContext,
                       times: StageTimes? = nil) -> Tensor {
        let c = configuration
        let d = c.encoder.hiddenSize, p = c.patchSize, side = c.imageSize / p
        let m = c.patches, tokens = c.tokens, patchLength = c.channels * p * p
        let x = Tensor(shape: [frames, tokens, d])
        times.measure("patch_embed") {
            let patches = Tensor(shape: [frames, m, patchLength]) // im2col, (c, ky, kx) order
            for f in 0..<frames {
                for py in 0..<side {
                    for px in 0..<side {
                        var dst = patches.data + (f * m + py * side + px) * patchLength
                        for ch in 0..<c.channels {
                            let plane = pixels + (f * c.channels + ch) * c.imageSize * c.imageSize
                            for ky in 0..<p {
                                let src = plane + (py * p + ky) * c.imageSize + px * p
                                dst.update(from: src, count: p)
                                dst += p
                            }
                        }
                    }
                }
            }
            for f in 0..<frames {
                patchEmbedding(patches.data + f * m * patchLength, rows: m,
                               into: x.data + (f * tokens + 1) * d, context: context)
                let cls = x.data + f * tokens * d
                for j in 0..<d { cls[j] = classEmbedding[j] }
                Functional.add(positionEmbedding.data, into: cls, count: tokens * d, context: context)
            }
            preLayerNorm(x.data, rows: frames * tokens, into: x.data, context: context)
        }
        return x
    }

    /// Embedding, ln_pre and the encoder over `clips` × `framesPerClip` frames; with
    /// `firstTokenOnly` only the CLS rows of the result are valid (see `TransformerEncoder`).
    func encode(pixels: UnsafePointer<Float>, clips: Int, framesPerClip: Int, firstTokenOnly: Bool,
                context: ComputeContext, times: StageTimes?, trace: LayerTrace? = nil) -> Tensor {
        let x = embed(pixels: pixels, frames: clips * framesPerClip, context: context, times: times)
        encoder(x, layout: SequenceLayout(clips: clips, frames: framesPerClip, tokens: configuration.tokens),
                causal: false, firstTokenOnly: firstTokenOnly, context: context, times: times, trace: trace)
        return x
    }

    /// Projected image embeddings (not normalised). - Returns: (frames, projectionDim).
    public func callAsFunction(pixels: UnsafePointer<Float>, frames: Int, context: ComputeContext,
                               times: StageTimes? = nil) -> Tensor {
        let hidden = encode(pixels: pixels, clips: frames, framesPerClip: 1, firstTokenOnly: true,
                            context: context, times: times)
        return times.measure("head") { frameEmbeddings(hidden, frames: frames, context: context) }
    }

    /// ln_post(CLS) · projection for every frame of encoder output (frames, 1+M, d).
    func frameEmbeddings(_ hidden: Tensor, frames: Int, context: ComputeContext) -> Tensor {
        let d = configuration.encoder.hiddenSize
        let pooled = Tensor(shape: [frames, d])
        postLayerNorm(hidden.data, rows: frames, ldx: configuration.tokens * d, into: pooled.data,
                      context: context)
        let out = Tensor(shape: [frames, projectionDim])
        projection(pooled.data, rows: frames, into: out.data, context: context)
        return out
    }
}
