import CKernels
import Ops

/// A depthwise convolution's weights, transposed to (taps, channels) for the channel-last
/// kernels.
package struct DepthwiseWeights: @unchecked Sendable {
    package let taps: Int
    package let channels: Int
    package let weight: Tensor // (taps, channels)
    package let bias: Tensor   // (channels)

    /// - Parameter weight: PyTorch layout (channels, 1, …taps).
    init(weight: [Float], bias: [Float], channels: Int, taps: Int) {
        self.taps = taps
        self.channels = channels
        var transposed = [Float](repeating: 0, count: taps * channels)
        for c in 0..<channels {
            for k in 0..<taps { transposed[k * channels + c] = weight[c * taps + k] }
        }
        self.weight = Tensor(shape: [taps, channels], values: transposed)
        self.bias = Tensor(shape: [channels], values: bias)
    }
}

/// fc1 → depthwise conv → fc2, one branch of an adapter.
package struct AdapterBranch: @unchecked Sendable {
    package let fc1: Linear
    package let conv: DepthwiseWeights
    package let fc2: Linear

    init(fc1: String, conv: String, fc2: String, outer: Int, width: Int, convShape: [Int],
         reader: WeightReader, context: ComputeContext) throws {
        self.fc1 = try reader.linear(fc1, in: outer, out: width, context: context)
        let taps = convShape.dropFirst(2).reduce(1, *)
        self.conv = DepthwiseWeights(weight: try reader.floats(conv + ".weight", shape: convShape),
                                     bias: try reader.floats(conv + ".bias", shape: [width]),
                                     channels: width, taps: taps)
        self.fc2 = try reader.linear(fc2, in: width, out: outer, context: context)
    }
}

/// TED-Adapter (spec §2, paper Eq. for A(Z) = Z + Z_E + Z_D), on the residual stream
/// Z: (clips, T, 1+M, d).
package final class TEDAdapter: ResidualAdapter, @unchecked Sendable {
    package let temporalEnhancement: AdapterBranch? // TE: fc1 → Conv1d over T → fc2, all tokens
    package let temporalDifference: AdapterBranch?  // TD: Δz → fc1 → 3×3 conv on the grid → fc2, patches
    package let grid: Int                           // √M
    package let width: Int

    init(names: M2CLIPNames.TEDAdapter, configuration: TEDConfiguration, hidden d: Int, grid: Int,
         reader: WeightReader, context: ComputeContext) throws {
        let r = configuration.width
        self.grid = grid
        width = r
        temporalEnhancement = configuration.temporalEnhancement
            ? try AdapterBranch(fc1: names.teFC1, conv: names.teConv, fc2: names.teFC2, outer: d, width: r,
                                convShape: [r, 1, 3], reader: reader, context: context)
            : nil
        temporalDifference = configuration.temporalDifference
            ? try AdapterBranch(fc1: names.tdFC1, conv: names.tdConv, fc2: names.tdFC2, outer: d, width: r,
                                convShape: [r, 1, 1, 3, 3], reader: reader, context: context)
            : nil
    }

    package func apply(_ x: Tensor, layout: SequenceLayout, firstTokenOnly: Bool, context: ComputeContext,
               times: StageTimes?) {
        times.measure("ted_adapter") {
            let d = x.shape.last!, r = width, t = layout.frames, tokens = layout.tokens
            let patches = grid * grid, frames = layout.sequences
            // Both branches read the same Z: compute their fc1 before either writes into x.
            // TE on all tokens, or on CLS only when nothing else is read afterwards (TD gives
            // CLS nothing, and the T-conv of CLS only mixes CLS rows).
            let teRows = firstTokenOnly ? frames : layout.rows
            var teHidden: Tensor?
            if let te = temporalEnhancement {
                let h = Tensor(shape: [teRows, r])
                te.fc1(x.data, rows: teRows, ldx: firstTokenOnly ? tokens * d : d, into: h.data, context: context)
                teHidden = h
            }
            var tdHidden: Tensor?
            if let td = temporalDifference, !firstTokenOnly {
                // D_t = z_t − z_{t−1} on patch tokens, D_1 = 0: (clips, T, M, d)
                let diff = Tensor(shape: [frames, patches, d])
                for b in 0..<layout.clips {
                    for f in 1..<max(t, 1) {
                        let cur = x.data + ((b * t + f) * tokens + 1) * d
                        let prev = cur - tokens * d
                        let out = diff.data + (b * t + f) * patches * d
                        for i in 0..<(patches * d) { out[i] = cur[i] - prev[i] }
                    }
                }
                let h = Tensor(shape: [frames * patches, r])
                td.fc1(diff.data, rows: frames * patches, into: h.data, context: context)
                tdHidden = h
            }
            if let te = temporalEnhancement, let h = teHidden {
                let conv = Tensor(shape: [teRows, r])
                m2k_temporal_dwconv3(context.pool, h.data, conv.data, layout.clips, t, firstTokenOnly ? 1 : tokens, r,
                                     te.conv.weight.data, te.conv.bias.data)
                te.fc2(conv.data, rows: teRows, into: x.data, ldy: firstTokenOnly ? tokens * d : d,
                       accumulate: true, context: context)
            }
            if let td = temporalDifference, let h = tdHidden {
                let conv = Tensor(shape: [frames * patches, r])
                m2k_spatial_dwconv3x3(context.pool, h.data, conv.data, frames, grid, grid, r, td.conv.weight.data,
                                      td.conv.bias.data)
                let out = Tensor(shape: [frames, patches, d])
                td.fc2(conv.data, rows: frames * patches, into: out.data, context: context)
                for f in 0..<frames { // CLS gets 0
                    Functional.add(out.data + f * patches * d, into: x.data + (f * tokens + 1) * d,
                                   count: patches * d, context: context)
                }
            }
        }
    }
}

/// The post-projection temporal adapter: e ← e + fc2(DWConv1d_T(fc1(e))) on per-frame
/// embeddings (clips, T, P).
package final class PostAdapter: @unchecked Sendable {
    package let branch: AdapterBranch

    init(configuration: PostAdapterConfiguration, projectionDim p: Int, reader: WeightReader,
         context: ComputeContext) throws {
        branch = try AdapterBranch(fc1: M2CLIPNames.postAdapterFC1, conv: M2CLIPNames.postAdapterConv,
                                   fc2: M2CLIPNames.postAdapterFC2, outer: p, width: configuration.width,
                                   convShape: [configuration.width, 1, 3], reader: reader, context: context)
    }

    func apply(_ embeddings: Tensor, clips: Int, frames: Int, context: ComputeContext) {
        let rows = clips * frames, r = branch.conv.channels
        let h = Tensor(shape: [rows, r]), conv = Tensor(shape: [rows, r])
        branch.fc1(embeddings.data, rows: rows, into: h.data, context: context)
        m2k_temporal_dwconv3(context.pool, h.data, conv.data, clips, frames, 1, r, branch.conv.weight.data,
                             branch.conv.bias.data)
        branch.fc2(conv.data, rows: rows, into: embeddings.data, accumulate: true, context: context)
    }
}

/// Text adapter (spec §3): z ← z + fc2(GELU(fc1(z))), exact GELU.
package final class TextAdapter: ResidualAdapter, @unchecked Sendable {
    package let fc1: Linear
    package let fc2: Linear

    package init(names: M2CLIPNames.TextAdapter, width: Int, hidden d: Int, reader: WeightReader,
         context: ComputeContext) throws {
        fc1 = try reader.linear(names.fc1, in: d, out: width, context: context)
        fc2 = try reader.linear(names.fc2, in: width, out: d, context: context)
    }

    package func apply(_ x: Tensor, layout: SequenceLayout, firstTokenOnly: Bool, context: ComputeContext,
               times: StageTimes?) {
        let rows = layout.rows
        let h = Tensor(shape: [rows, fc1.outFeatures])
        fc1(x.data, rows: rows, into: h.data, activation: .gelu, context: context)
        fc2(h.data, rows: rows, into: x.data, accumulate: true, context: context)
    }
}
