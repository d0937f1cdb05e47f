import Foundation

/// The loss functions of spec §4/§9 with their gradients, on small row-major matrices (B×B,
/// B×C, n×V). Sums run in Double.
enum Losses {
    /// Row-wise log-softmax of `logits` (rows × cols).
    static func logSoftmax(_ logits: [Float], rows: Int, cols: Int) -> [Double] {
        var out = [Double](repeating: 0, count: rows * cols)
        for i in 0..<rows {
            let row = logits[(i * cols)..<((i + 1) * cols)]
            let top = Double(row.max() ?? 0)
            var sum = 0.0
            for v in row { sum += exp(Double(v) - top) }
            let logSum = top + log(sum)
            for j in 0..<cols { out[i * cols + j] = Double(logits[i * cols + j]) - logSum }
        }
        return out
    }

    /// Cross-entropy, mean over rows: −(1/n) Σ_i log softmax(logits_i)[label_i].
    /// - Returns: the loss and dL/dlogits scaled by `weight`.
    static func crossEntropy(_ logits: [Float], rows: Int, cols: Int, labels: [Int],
                             weight: Float) -> (loss: Float, gradient: [Float]) {
        precondition(labels.count == rows)
        guard rows > 0 else { return (0, []) }
        let lsm = logSoftmax(logits, rows: rows, cols: cols)
        var loss = 0.0
        var grad = [Float](repeating: 0, count: rows * cols)
        let scale = Double(weight) / Double(rows)
        for i in 0..<rows {
            loss -= lsm[i * cols + labels[i]]
            // d/dlogits = softmax − onehot
            for j in 0..<cols {
                let p = exp(lsm[i * cols + j]) - (j == labels[i] ? 1 : 0)
                grad[i * cols + j] = Float(p * scale)
            }
        }
        return (Float(loss / Double(rows)), grad)
    }

    /// ActionCLIP's KLLoss on a B×B logit matrix: targets p_i = softmax(10 · gt_i), gt[i][k] =
    /// (label_i == label_k); loss = Σ_{i,k} p_ik (log p_ik − log softmax(logits_i)_k) / B.
    /// - Returns: the loss and dL/dlogits (= (softmax − p) / B) scaled by `weight`.
    static func klDivergence(_ logits: [Float], labels: [Int], weight: Float) -> (loss: Float, gradient: [Float]) {
        let n = labels.count
        guard n > 0 else { return (0, []) }
        let lsm = logSoftmax(logits, rows: n, cols: n)
        var loss = 0.0
        var grad = [Float](repeating: 0, count: n * n)
        let scale = Double(weight) / Double(n)
        for i in 0..<n {
            // softmax of 10·gt: e^10 for matching labels, e^0 for the others
            let matches = labels.filter { $0 == labels[i] }.count
            let logZ = log(Double(matches) * exp(10.0) + Double(n - matches))
            for k in 0..<n {
                let logP = (labels[k] == labels[i] ? 10.0 : 0.0) - logZ
                let p = exp(logP)
                loss += p * (logP - lsm[i * n + k])
                grad[i * n + k] = Float((exp(lsm[i * n + k]) - p) * scale)
            }
        }
        return (Float(loss / Double(n)), grad)
    }

    /// x̂ = x / max(‖x‖, 1e-12) per row of `width`; returns x̂ and the norms.
    static func normalize(_ x: [Float], width: Int) -> (unit: [Float], norms: [Float]) {
        let rows = x.count / max(width, 1)
        var unit = x, norms = [Float](repeating: 0, count: rows)
        for i in 0..<rows {
            var s: Double = 0
            for j in 0..<width { s += Double(x[i * width + j]) * Double(x[i * width + j]) }
            let norm = Float(max(s.squareRoot(), 1e-12))
            norms[i] = norm
            for j in 0..<width { unit[i * width + j] = x[i * width + j] / norm }
        }
        return (unit, norms)
    }

    /// Backward of `normalize`: dx = (dx̂ − x̂ (x̂ · dx̂)) / ‖x‖.
    static func normalizeBackward(unit: [Float], norms: [Float], dUnit: [Float], width: Int) -> [Float] {
        var dx = [Float](repeating: 0, count: unit.count)
        for i in 0..<norms.count {
            var dot: Double = 0
            for j in 0..<width { dot += Double(unit[i * width + j]) * Double(dUnit[i * width + j]) }
            for j in 0..<width {
                dx[i * width + j] = (dUnit[i * width + j] - unit[i * width + j] * Float(dot)) / norms[i]
            }
        }
        return dx
    }

    /// c(m × n) = scale · a(m × k) · b(n × k)ᵀ.
    static func matmulTransposed(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, scale: Float) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for t in 0..<k { s += a[i * k + t] * b[j * k + t] }
                c[i * n + j] = scale * s
            }
        }
        return c
    }

    /// For c = scale · a bᵀ: da += scale · dc b, db += scale · dcᵀ a.
    static func matmulTransposedBackward(_ a: [Float], _ b: [Float], dc: [Float], m: Int, n: Int, k: Int,
                                         scale: Float, da: inout [Float], db: inout [Float]) {
        for i in 0..<m {
            for j in 0..<n {
                let g = scale * dc[i * n + j]
                if g == 0 { continue }
                for t in 0..<k {
                    da[i * k + t] += g * b[j * k + t]
                    db[j * k + t] += g * a[i * k + t]
                }
            }
        }
    }

    /// The transpose of a rows × cols matrix.
    static func transpose(_ x: [Float], rows: Int, cols: Int) -> [Float] {
        var t = [Float](repeating: 0, count: x.count)
        for i in 0..<rows { for j in 0..<cols { t[j * rows + i] = x[i * cols + j] } }
        return t
    }

    /// The contrastive term of spec §4 over n (video, prompt) pairs: KL of s·V̂T̂ᵀ against the
    /// label-equality targets both ways, each weighted `weight` / 4 (total = (KL₁ + KL₂)/2 of
    /// the contrastive half).
    /// - Returns: both KL values and dL/dV̂, dL/dT̂ (n, width).
    static func contrastive(videoUnit vHat: [Float], textUnit tHat: [Float], labels: [Int], width p: Int,
                            scale s: Float, weight: Float)
        -> (v2t: Float, t2v: Float, dVideoUnit: [Float], dTextUnit: [Float]) {
        let b = labels.count
        let v2t = matmulTransposed(vHat, tHat, m: b, n: b, k: p, scale: s)
        let kl1 = klDivergence(v2t, labels: labels, weight: weight / 4)
        let kl2 = klDivergence(transpose(v2t, rows: b, cols: b), labels: labels, weight: weight / 4)
        let kl2T = transpose(kl2.gradient, rows: b, cols: b)
        let dV2T = zip(kl1.gradient, kl2T).map { $0 + $1 }
        var dvHat = [Float](repeating: 0, count: b * p), dtHat = [Float](repeating: 0, count: b * p)
        matmulTransposedBackward(vHat, tHat, dc: dV2T, m: b, n: b, k: p, scale: s, da: &dvHat, db: &dtHat)
        return (kl1.loss, kl2.loss, dvHat, dtHat)
    }
}
