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
