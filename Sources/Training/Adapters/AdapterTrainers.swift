import CKernels
import M2Model
import Ops

/// What an adapter's backward needs from its forward.
class AdapterTape {}

/// The training side of a residual adapter x ← A(x) = x + branches(x) (spec §2–3): the forward
/// keeps what its backward needs; the backward turns dL/dA into dL/dx in place and adds the
/// adapter's weight gradients.
protocol AdapterTrainer: AnyObject {
    /// x(rows, d) ← A(x). `layout` groups the rows (clips, frames, tokens).
    func forward(_ x: Tensor, layout: SequenceLayout, context: ComputeContext) -> AdapterTape
    /// dx ← dx + (∂ branches / ∂x)ᵀ dx; weight gradients +=. Without `inputGradient` only the
    /// weight gradients are computed (nothing below needs dx).
    func backward(_ tape: AdapterTape, dx: Tensor, layout: SequenceLayout, inputGradient: Bool,
                  context: ComputeContext)
}

/// fc1 → depthwise conv → fc2 (one TED branch, or the post-projection adapter), with its
/// gradients. The conv is Conv1d over frames (kernel 3) or 3×3 over the patch grid.
final class BranchTrainer: @unchecked Sendable {
    enum Conv { case temporal, spatial(grid: Int) }

    let branch: AdapterBranch
    let conv: Conv
    let fc1: LinearGradient
    let convGradient: ConvGradient
    let fc2: LinearGradient

    init(_ branch: AdapterBranch, conv: Conv) {
        self.branch = branch
        self.conv = conv
        fc1 = LinearGradient(branch.fc1)
        convGradient = ConvGradient(branch.conv)
        fc2 = LinearGradient(branch.fc2)
    }

    /// Registers fc1, conv, fc2 under the branch's release names.
    func register(in set: GradientSet, fc1 fc1Name: String, conv convName: String, fc2 fc2Name: String) {
        set.register(fc1Name, fc1)
        let r = branch.conv.channels
        let shape: [Int]
        switch conv {
        case .temporal: shape = [r, 1, 3]
        case .spatial: shape = [r, 1, 1, 3, 3]
        }
        set.register(convName, convGradient, releaseShape: shape)
        set.register(fc2Name, fc2)
    }

    /// h = fc1(x): (rows, r); the forward keeps it.
    func hidden(_ x: UnsafePointer<Float>, rows: Int, ldx: Int, context: ComputeContext) -> Tensor {
        let h = Tensor(shape: [rows, branch.conv.channels])
        branch.fc1(x, rows: rows, ldx: ldx, into: h.data, context: context)
        return h
    }

    /// c = conv(h), (rows, r), rows grouped as `layout` (temporal) or (frames, grid², r) (spatial).
    func convolve(_ h: Tensor, layout: SequenceLayout, context: ComputeContext) -> Tensor {
        let c = Tensor(shape: h.shape), r = branch.conv.channels
        switch conv {
        case .temporal:
            m2k_temporal_dwconv3(context.pool, h.data, c.data, layout.clips, layout.frames, layout.tokens, r,
                                 branch.conv.weight.data, branch.conv.bias.data)
        case .spatial(let grid):
            m2k_spatial_dwconv3x3(context.pool, h.data, c.data, h.shape[0] / (grid * grid), grid, grid, r,
                                  branch.conv.weight.data, branch.conv.bias.data)
        }
        return c
    }

    /// Backward of y = fc2(conv(fc1(x))): from dy (rows, out) and the forward's input x and
    /// hidden h, adds the weight gradients and returns dL/dx's contribution dh · W1 when asked
    /// (written into `dx` with `accumulate`).
    func backward(dy: UnsafePointer<Float>, lddy: Int, input x: UnsafePointer<Float>, ldx: Int, hidden h: Tensor,
                  layout: SequenceLayout, dx: UnsafeMutablePointer<Float>?, lddx: Int, accumulate: Bool,
                  context: ComputeContext) {
        let rows = h.shape[0], r = branch.conv.channels
        // y = fc2(c)
        let c = convolve(h, layout: layout, context: context)
        branch.fc2.backwardWeights(dy, rows: rows, lddy: lddy, input: c.data, into: fc2, context: context)
        let dc = Tensor(shape: [rows, r])
        branch.fc2.backwardInput(dy, rows: rows, lddy: lddy, into: dc.data, accumulate: false, context: context)
        // c = conv(h)
        let dh = Tensor(shape: [rows, r])
        switch conv {
        case .temporal:
            m2k_temporal_dwconv3_backward(context.pool, h.data, dc.data, dh.data, layout.clips, layout.frames,
                                          layout.tokens, r, branch.conv.weight.data, convGradient.weight.data,
                                          convGradient.bias.data)
        case .spatial(let grid):
            m2k_spatial_dwconv3x3_backward(context.pool, h.data, dc.data, dh.data, rows / (grid * grid), grid, grid,
                                           r, branch.conv.weight.data, convGradient.weight.data,
                                           convGradient.bias.data)
        }
        // h = fc1(x)
        branch.fc1.backwardWeights(dh.data, rows: rows, input: x, ldx: ldx, into: fc1, context: context)
        if let dx {
            branch.fc1.backwardInput(dh.data, rows: rows, into: dx, lddx: lddx, accumulate: accumulate,
                                     context: context)
        }
    }
}

/// TED-Adapter (spec §2): Z + TE(Z) + TD(Z) on (clips, T, 1+M, d). On a stream cut down to
/// the CLS rows (layout tokens = 1, after the last attention) only TE runs: TD gives CLS 0.
final class TEDAdapterTrainer: AdapterTrainer, @unchecked Sendable {
    let adapter: TEDAdapter
    let temporalEnhancement: BranchTrainer?
    let temporalDifference: BranchTrainer?

    final class Tape: AdapterTape {
        let input: Tensor       // Z: (rows, d)
        var teHidden: Tensor?   // fc1(Z): (rows, r)
        var tdHidden: Tensor?   // fc1(ΔZ): (clips·T·M, r)
        init(input: Tensor) { self.input = input }
    }

    init(_ adapter: TEDAdapter, names: M2CLIPNames.TEDAdapter, gradients: GradientSet) {
        self.adapter = adapter
        temporalEnhancement = adapter.temporalEnhancement.map { BranchTrainer($0, conv: .temporal) }
        temporalDifference = adapter.temporalDifference.map { BranchTrainer($0, conv: .spatial(grid: adapter.grid)) }
        temporalEnhancement?.register(in: gradients, fc1: names.teFC1, conv: names.teConv, fc2: names.teFC2)
        temporalDifference?.register(in: gradients, fc1: names.tdFC1, conv: names.tdConv, fc2: names.tdFC2)
    }

    private var patches: Int { adapter.grid * adapter.grid }

    /// D_t = z_t − z_{t−1} on the patch tokens, D_1 = 0: (clips, T, M, d).
    private func difference(_ z: Tensor, layout: SequenceLayout) -> Tensor {
        let d = z.shape.last!, m = patches, tokens = layout.tokens, t = layout.frames
        let diff = Tensor(shape: [layout.sequences * m, d])
        for b in 0..<layout.clips {
            for f in 1..<max(t, 1) {
                let cur = z.data + ((b * t + f) * tokens + 1) * d, prev = cur - tokens * d
                let out = diff.data + (b * t + f) * m * d
                for i in 0..<(m * d) { out[i] = cur[i] - prev[i] }
            }
        }
        return diff
    }

    private func hasPatches(_ layout: SequenceLayout) -> Bool {
        precondition(layout.tokens == 1 || layout.tokens == 1 + patches, "TED-Adapter on \(layout.tokens) tokens")
        return layout.tokens > 1
    }

    func forward(_ x: Tensor, layout: SequenceLayout, context: ComputeContext) -> AdapterTape {
        let d = x.shape.last!, rows = layout.rows, m = patches
        let tape = Tape(input: Tensor(shape: [rows, d], copying: x.data))
        // both branches read Z: their fc1 run before either writes into x
        if let te = temporalEnhancement { tape.teHidden = te.hidden(x.data, rows: rows, ldx: d, context: context) }
        var diff: Tensor?
        if let td = temporalDifference, hasPatches(layout) {
            let D = difference(tape.input, layout: layout)
            tape.tdHidden = td.hidden(D.data, rows: D.shape[0], ldx: d, context: context)
            diff = D
        }
        if let te = temporalEnhancement, let h = tape.teHidden {
            let c = te.convolve(h, layout: layout, context: context)
            te.branch.fc2(c.data, rows: rows, into: x.data, accumulate: true, context: context)
        }
        if let td = temporalDifference, let h = tape.tdHidden, let D = diff {
            let c = td.convolve(h, layout: layout, context: context)
            td.branch.fc2(c.data, rows: D.shape[0], into: D.data, context: context) // reuse D for the output
            for f in 0..<layout.sequences { // CLS gets 0
                Functional.add(D.data + f * m * d, into: x.data + (f * layout.tokens + 1) * d, count: m * d,
                               context: context)
            }
        }
        return tape
    }

    func backward(_ tape: AdapterTape, dx: Tensor, layout: SequenceLayout, inputGradient: Bool,
                  context: ComputeContext) {
        let tape = tape as! Tape
        let d = dx.shape.last!, rows = layout.rows, m = patches, tokens = layout.tokens
        // A = Z + TE(Z) + TD(Z): dZ = dA + TEᵀ dA + TDᵀ dA. Both branches read dA while dx
        // collects dZ, so dA is kept apart.
        let dA = Tensor(shape: [rows, d], copying: dx.data)
        if let te = temporalEnhancement, let h = tape.teHidden {
            te.backward(dy: dA.data, lddy: d, input: tape.input.data, ldx: d, hidden: h, layout: layout,
                        dx: inputGradient ? dx.data : nil, lddx: d, accumulate: true, context: context)
        }
        if let td = temporalDifference, let h = tape.tdHidden {
            // TD writes the patch rows only (CLS gets 0)
            let dOut = Tensor(shape: [layout.sequences * m, d])
            for f in 0..<layout.sequences {
                (dOut.data + f * m * d).update(from: dA.data + (f * tokens + 1) * d, count: m * d)
            }
            let D = difference(tape.input, layout: layout)
            let dD = Tensor(shape: D.shape)
            td.backward(dy: dOut.data, lddy: d, input: D.data, ldx: d, hidden: h, layout: layout,
                        dx: inputGradient ? dD.data : nil, lddx: d, accumulate: false, context: context)
            if inputGradient {
                // D_t = z_t − z_{t−1} (t ≥ 1): dz_t += dD_t, dz_{t−1} −= dD_t
                let t = layout.frames
                for b in 0..<layout.clips {
                    for f in 1..<max(t, 1) {
                        let g = dD.data + (b * t + f) * m * d
                        let cur = dx.data + ((b * t + f) * tokens + 1) * d, prev = cur - tokens * d
                        for i in 0..<(m * d) { cur[i] += g[i]; prev[i] -= g[i] }
                    }
                }
            }
        }
    }
}

/// Text adapter (spec §3): z + fc2(GELU(fc1(z))), row by row.
final class TextAdapterTrainer: AdapterTrainer, @unchecked Sendable {
    let adapter: TextAdapter
    let fc1: LinearGradient
    let fc2: LinearGradient

    final class Tape: AdapterTape {
        let input: Tensor  // z: (rows, d)
        let hidden: Tensor // fc1(z), before GELU: (rows, r)
        init(input: Tensor, hidden: Tensor) {
            self.input = input
            self.hidden = hidden
        }
    }

    init(_ adapter: TextAdapter, names: M2CLIPNames.TextAdapter, gradients: GradientSet) {
        self.adapter = adapter
        fc1 = LinearGradient(adapter.fc1)
        fc2 = LinearGradient(adapter.fc2)
        gradients.register(names.fc1, fc1)
        gradients.register(names.fc2, fc2)
    }

    func forward(_ x: Tensor, layout: SequenceLayout, context: ComputeContext) -> AdapterTape {
        let rows = layout.rows, d = x.shape.last!, r = adapter.fc1.outFeatures
        let input = Tensor(shape: [rows, d], copying: x.data)
        let h = Tensor(shape: [rows, r]), g = Tensor(shape: [rows, r])
        adapter.fc1(x.data, rows: rows, into: h.data, context: context)
        Elementwise.activation(.gelu, h.data, into: g.data, rows: rows, width: r, context: context)
        adapter.fc2(g.data, rows: rows, into: x.data, accumulate: true, context: context)
        return Tape(input: input, hidden: h)
    }

    func backward(_ tape: AdapterTape, dx: Tensor, layout: SequenceLayout, inputGradient: Bool,
                  context: ComputeContext) {
        let tape = tape as! Tape
        let rows = layout.rows, r = adapter.fc1.outFeatures
        // x += fc2(g): dW2 += dxᵀ g, dg = dx · W2
        let g = Tensor(shape: [rows, r])
        Elementwise.activation(.gelu, tape.hidden.data, into: g.data, rows: rows, width: r, context: context)
        adapter.fc2.backwardWeights(dx.data, rows: rows, input: g.data, into: fc2, context: context)
        let dh = Tensor(shape: [rows, r])
        adapter.fc2.backwardInput(dx.data, rows: rows, into: dh.data, accumulate: false, context: context)
        // g = GELU(h)
        Elementwise.activationBackward(.gelu, input: tape.hidden.data, dy: dh.data, into: dh.data,
                                       count: rows * r, context: context)
        // h = fc1(z)
        adapter.fc1.backwardWeights(dh.data, rows: rows, input: tape.input.data, into: fc1, context: context)
        if inputGradient {
            adapter.fc1.backwardInput(dh.data, rows: rows, into: dx.data, accumulate: true, context: context)
        }
    }
}

/// The post-projection temporal adapter: e + fc2(DWConv1d_T(fc1(e))) on (clips, T, P).
final class PostAdapterTrainer: @unchecked Sendable {
    let branch: BranchTrainer

    init(_ adapter: PostAdapter, gradients: GradientSet) {
        branch = BranchTrainer(adapter.branch, conv: .temporal)
        branch.register(in: gradients, fc1: M2CLIPNames.postAdapterFC1, conv: M2CLIPNames.postAdapterConv,
                        fc2: M2CLIPNames.postAdapterFC2)
    }

    /// e ← e + fc2(conv(fc1(e))); returns (input, hidden) for the backward.
    func forward(_ e: Tensor, clips: Int, frames: Int, context: ComputeContext) -> (input: Tensor, hidden: Tensor) {
        let rows = clips * frames, p = e.shape.last!
        let input = Tensor(shape: [rows, p], copying: e.data)
        let h = branch.hidden(e.data, rows: rows, ldx: p, context: context)
        let c = branch.convolve(h, layout: SequenceLayout(clips: clips, frames: frames, tokens: 1), context: context)
        branch.branch.fc2(c.data, rows: rows, into: e.data, accumulate: true, context: context)
        return (input, h)
    }

    /// de ← de + branchᵀ de.
    func backward(_ saved: (input: Tensor, hidden: Tensor), de: Tensor, clips: Int, frames: Int,
                  context: ComputeContext) {
        let p = de.shape.last!
        let dOut = Tensor(shape: de.shape, copying: de.data)
        branch.backward(dy: dOut.data, lddy: p, input: saved.input.data, ldx: p, hidden: saved.hidden,
                        layout: SequenceLayout(clips: clips, frames: frames, tokens: 1), dx: de.data, lddx: p,
                        accumulate: true, context: context)
    }
}
