/// The publisher's bounded FIFO of messages waiting for the broker. Full, it drops the oldest
/// message below QoS 1 to make room, and only when every queued message is QoS ≥ 1 the oldest
/// of those; every drop is counted. Not thread-safe: `MQTTPublisher` holds it under its lock.
struct MQTTOutbox {
    let capacity: Int
    private var items: [MQTTMessage] = []   // (≤ capacity), oldest first from head
    private var head = 0
    private(set) var dropped = 0

    init(capacity: Int) {
        precondition(capacity > 0, "MQTTOutbox capacity must be positive, got \(capacity)")
        self.capacity = capacity
    }

    var count: Int { items.count - head }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ message: MQTTMessage) {
        if count >= capacity {
            let victim = items[head...].firstIndex { $0.qos == 0 } ?? head
            items.remove(at: victim)
            dropped += 1
        }
        items.append(message)
    }

    /// Removes the queued messages for `topic` (a retained payload superseded by a newer one:
    /// the broker would keep only the newest). Not counted as drops.
    mutating func removeQueued(topic: String) {
        guard items[head...].contains(where: { $0.topic == topic }) else { return }
        items = items[head...].filter { $0.topic != topic }
        head = 0
    }

    var first: MQTTMessage? { isEmpty ? nil : items[head] }

    mutating func removeFirst() -> MQTTMessage? {
        guard !isEmpty else { return nil }
        let message = items[head]
        head += 1
        if head > 256 && head * 2 > items.count { items.removeFirst(head); head = 0 }
        return message
    }

    /// Everything still queued, oldest first; empties the outbox.
    mutating func drain() -> [MQTTMessage] {
        defer { items.removeAll(); head = 0 }
        return Array(items[head...])
    }
}
