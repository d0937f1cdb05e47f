import ArgumentParser
import Video

/// The clip options `classify`, `train` and `eval` share, parsed one way.
enum ClipOptions {
    /// `NxC`: N temporal clips × C spatial crops (C 1 or 3).
    static func views(_ text: String) throws -> (temporal: Int, spatial: Int) {
        let parts = text.lowercased().split(separator: "x").map { Int($0) }
        guard parts.count == 2, let n = parts[0], let c = parts[1], n >= 1, c == 1 || c == 3 else {
            throw ValidationError("--views must be NxC with N ≥ 1 and C 1 or 3, got \(text)")
        }
        return (n, c)
    }

    /// `segments` (one frame per equal segment; `segment` too) or `dense:K` (every K-th frame;
    /// `dense` alone: K = 16, the K400 recipe).
    static func sampling(_ text: String) throws -> SamplingStrategy {
        if text == "segments" || text == "segment" { return .segments }
        if text == "dense" { return .dense(stride: 16) }
        if text.hasPrefix("dense:"), let k = Int(text.dropFirst(6)), k >= 1 { return .dense(stride: k) }
        throw ValidationError("--sampling must be segments or dense:K, got \(text)")
    }
}
