import Ops
import Foundation

/// Wall time spent per named stage of a forward pass, for `m2clip bench`.
public final class StageTimes: @unchecked Sendable {
    public private(set) var nanoseconds: [String: UInt64] = [:]
    public private(set) var order: [String] = []

    public init() {}

    @inline(__always)
    public func measure<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try body()
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        if nanoseconds[stage] == nil { order.append(stage) }
        nanoseconds[stage, default: 0] += elapsed
        return result
    }

    public func reset() { nanoseconds = [:]; order = [] }
}

extension Optional where Wrapped == StageTimes {
    /// Runs `body`, timing it when a recorder is present.
    @inline(__always)
    func measure<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
        switch self {
        case .some(let times): return try times.measure(stage, body)
        case .none: return try body()
        }
    }
}

/// The residual stream after each encoder block, copied: what the quantization report
/// compares block by block. With the last block pruned to CLS rows, only those rows of the
/// last entry are meaningful; `validRows` says which.
public final class LayerTrace: @unchecked Sendable {
    public struct Entry: Sendable {
        public var values: [Float]
        /// Row indices (token rows) that hold this block's output.
        public var validRows: [Int]
        public var width: Int
    }

    public private(set) var entries: [Entry] = []

    public init() {}

    func record(_ x: Tensor, rows: [Int], width: Int) {
        entries.append(Entry(values: x.array, validRows: rows, width: width))
    }
}
