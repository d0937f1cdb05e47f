import Ops

/// The order in which an epoch visits a clip list, and the seeds of its random choices: pure
/// functions of (seed, epoch[, position]), so a run resumed from a checkpoint sees the same
/// clips with the same augmentation, whatever the number of workers.
public enum ClipOrder: Sendable, Equatable {
    /// A permutation of the list (Fisher–Yates).
    case shuffled
    /// `entries.count` draws, each a class chosen uniformly among the classes present and then
    /// one of its clips uniformly (with replacement): equal class frequencies on an
    /// imbalanced list.
    case balanced
    /// List order.
    case sequential

    /// Indices into `labels` (one per clip of the list) for epoch `epoch`.
    public func indices(labels: [Int], seed: UInt64, epoch: Int) -> [Int] {
        var generator = SplitMix64(seed: SplitMix64.mix(seed, ClipOrder.orderDomain, UInt64(bitPattern: Int64(epoch))))
        switch self {
        case .sequential:
            return Array(labels.indices)
        case .shuffled:
            var order = Array(labels.indices)
            // Fisher–Yates spelled out rather than `shuffled(using:)`, whose algorithm the
            // standard library does not promise to keep.
            for i in stride(from: order.count - 1, to: 0, by: -1) {
                order.swapAt(i, Int(generator.next(upperBound: UInt64(i + 1))))
            }
            return order
        case .balanced:
            var byClass: [Int: [Int]] = [:]
            for (i, label) in labels.enumerated() { byClass[label, default: []].append(i) }
            let classes = byClass.keys.sorted()
            guard !classes.isEmpty else { return [] }
            return labels.indices.map { _ in
                let members = byClass[classes[Int(generator.next(upperBound: UInt64(classes.count)))]]!
                return members[Int(generator.next(upperBound: UInt64(members.count)))]
            }
        }
    }

    /// The seed of the clip at `position` of epoch `epoch`'s order.
    public static func clipSeed(seed: UInt64, epoch: Int, position: Int) -> UInt64 {
        SplitMix64.mix(seed, clipDomain, UInt64(bitPattern: Int64(epoch)), UInt64(bitPattern: Int64(position)))
    }

    private static let orderDomain: UInt64 = 0x6F72_6465_7200_0000 // "order"
    private static let clipDomain: UInt64 = 0x636C_6970_0000_0000 // "clip"
}
