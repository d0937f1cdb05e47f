import CKernels
import Foundation
import Ops
import Testing

// Shared by the kernel tests: the variants to test, reproducible inputs, matrices whose
// padding catches stray writes, and a comparison that names the first element out of bounds.

/// Every kernel table this CPU and build can run, scalar first (NULL tables are skipped).
func availableVariants() -> [UnsafePointer<m2k_kernels>] {
    (M2K_VARIANT_SCALAR.rawValue..<M2K_VARIANT_COUNT.rawValue).compactMap {
        m2k_variant_kernels(m2k_variant(rawValue: $0))
    }
}

extension UnsafePointer<m2k_kernels> {
    var name: String { String(cString: pointee.name) }
}

let activations: [(m2k_activation, String)] = [
    (M2K_ACT_NONE, "none"), (M2K_ACT_QUICKGELU, "quickgelu"), (M2K_ACT_GELU, "gelu"),
]


func randomFloats(_ count: Int, in range: ClosedRange<Float>, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float.random(in: range, using: &generator) }
}

/// A row-major (rows, cols) matrix with row stride `ld` ≥ cols. The floats between rows and a
/// guard after the last row hold a sentinel, so a kernel that writes past a row is caught.
/// GEMM epilogues every variant is checked with: (bias, activation, accumulate, label).
/// accumulate requires act = none.
let gemmEpilogues: [(Bool, m2k_activation, Bool, String)] = [
    (false, M2K_ACT_NONE, false, "plain"),
    (true, M2K_ACT_NONE, false, "bias"),
    (true, M2K_ACT_QUICKGELU, false, "bias+quickgelu"),
    (false, M2K_ACT_GELU, false, "gelu"),
    (true, M2K_ACT_GELU, false, "bias+gelu"),
    (true, M2K_ACT_NONE, true, "accumulate+bias"),
]

/// `count` standard normal samples, reproducible from `seed`.
func normals(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in generator.nextNormal() }
}

struct StridedMatrix {
    static let sentinel: Float = -7777.25
    static let guardFloats = 64

    let rows: Int, cols: Int, ld: Int
    var storage: [Float]

    /// Padding and guard hold the sentinel; element (r, c) is `value(r, c)`.
    init(rows: Int, cols: Int, ld: Int? = nil, _ value: (Int, Int) -> Float) {
        self.rows = rows
        self.cols = cols
        self.ld = ld ?? cols
        precondition(self.ld >= cols)
        storage = [Float](repeating: Self.sentinel,
                          count: rows * self.ld + Self.guardFloats)
        for r in 0..<rows {
            for c in 0..<cols { storage[r * self.ld + c] = value(r, c) }
        }
    }

    /// Uniform random elements in `range`.
    init(rows: Int, cols: Int, ld: Int? = nil, in range: ClosedRange<Float>, seed: UInt64) {
        let values = randomFloats(rows * cols, in: range, seed: seed)
        self.init(rows: rows, cols: cols, ld: ld) { r, c in values[r * cols + c] }
    }

    /// Same shape and stride, every element the sentinel: an output buffer.
    func blank() -> StridedMatrix {
        StridedMatrix(rows: rows, cols: cols, ld: ld) { _, _ in Self.sentinel }
    }

    subscript(row: Int, col: Int) -> Float { storage[row * ld + col] }

    /// Where the first float outside the matrix (row padding or the guard after the last
    /// row) no longer holds the sentinel; nil when none was touched.
    func strayWrite() -> String? {
        for (i, v) in storage.enumerated() where v.bitPattern != Self.sentinel.bitPattern {
            if i >= rows * ld { return "\(i - rows * ld) floats past the last row" }
            let (r, c) = i.quotientAndRemainder(dividingBy: ld)
            if c >= cols { return "row \(r), col \(c) (padding)" }
        }
        return nil
    }
}

/// How far a kernel may stray from the reference: |got − want| ≤ bound · max(floor, m), with
/// m = |want| (per element) or the largest |want| of the row (per row: sums and dot products,
/// whose rounding error scales with the row, not with one small element).
struct Tolerance: CustomStringConvertible {
    var bound: Double
    var floor: Double
    var perRow: Bool

    static func element(_ bound: Double, floor: Double = 1) -> Tolerance {
        Tolerance(bound: bound, floor: floor, perRow: false)
    }
    static func row(_ bound: Double, floor: Double = 1) -> Tolerance {
        Tolerance(bound: bound, floor: floor, perRow: true)
    }
    static let exact = Tolerance(bound: 0, floor: 0, perRow: false)

    var description: String {
        "\(bound) × max(\(floor), |\(perRow ? "row max of reference" : "reference")|)"
    }
}

/// Compares `got` with the reference `want` element by element and records one issue, for the
/// first element out of bounds, naming the kernel, variant, case and (row, col). Also fails
/// when the kernel wrote outside the matrix. Returns the largest normalised error
/// |got − want| / max(floor, m) seen; with M2CLIP_TEST_REPORT set it is also printed.
@discardableResult
func expectClose(
    _ got: StridedMatrix, _ want: StridedMatrix, _ tolerance: Tolerance,
    kernel: String, variant: String, detail: String,
    sourceLocation: SourceLocation = #_sourceLocation
) -> Double {
    precondition(got.rows == want.rows && got.cols == want.cols)
    let label = "\(kernel) [\(variant)] \(detail)"
    var worst = 0.0
    var reported = false
    for r in 0..<want.rows {
        var rowMagnitude = 0.0
        if tolerance.perRow {
            for c in 0..<want.cols where want[r, c].isFinite {
                rowMagnitude = max(rowMagnitude, Double(abs(want[r, c])))
            }
        }
        for c in 0..<want.cols {
            let g = got[r, c], w = want[r, c]
            if g == w || (g.isNaN && w.isNaN) { continue }
            let magnitude = tolerance.perRow ? rowMagnitude : Double(abs(w))
            let scale = max(tolerance.floor, magnitude)
            let error = abs(Double(g) - Double(w))
            let normalised = scale > 0 ? error / scale : (error == 0 ? 0 : .infinity)
            worst = max(worst, normalised.isNaN ? .infinity : normalised)
            if !(error <= tolerance.bound * scale) && !reported {
                reported = true
                let mismatch = "got \(g), reference \(w), error \(error) > \(tolerance)"
                Issue.record(
                    "\(label): first mismatch at (row \(r), col \(c)): \(mismatch)",
                    sourceLocation: sourceLocation)
            }
        }
    }
    if let stray = got.strayWrite() {
        let matrix = "\(got.rows)×\(got.cols) matrix (ld \(got.ld))"
        Issue.record(
            "\(label): wrote outside the \(matrix): \(stray)",
            sourceLocation: sourceLocation)
    }
    if ProcessInfo.processInfo.environment["M2CLIP_TEST_REPORT"] != nil {
        print("max-error \(kernel) \(variant) \(detail): \(worst)")
    }
    return worst
}

/// `body` with the address of `array`'s elements, or with nil when there is no array (an
/// optional bias).
func withOptionalPointer<R>(_ array: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}

struct PoolCreationFailed: Error, CustomStringConvertible {
    var threads: Int32
    var errno: Int32
    var description: String { "m2k_pool_create(\(threads)) failed: errno \(errno)" }
}

/// A thread pool of `threads` (the caller included) for the duration of `body`.
func withPool<T>(threads: Int32, _ body: (OpaquePointer) throws -> T) throws -> T {
    guard let pool = m2k_pool_create(threads) else {
        throw PoolCreationFailed(threads: threads, errno: errno)
    }
    defer { m2k_pool_destroy(pool) }
    return try body(pool)
}
