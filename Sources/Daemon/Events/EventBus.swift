import Foundation

/// Fans published events out to subscribers as NDJSON lines without ever blocking the
/// publisher. Every event gets the next `seq` (1, 2, …) of this run (`epoch`) and is kept in a
/// ring of the last `ringCapacity` lines for subscribers that reconnect with `since`.
///
/// Line kinds: event lines (action.*, camera.status, stats) carry `seq`; session lines
/// (hello, dropped, resync, error) do not, so a client takes its resume point only from lines
/// that have a `seq`. `hello` carries `latest_seq`, the last published seq when it was written.
///
/// With a `history`, every event but `stats` is stored before any subscriber is offered it,
/// and a `since` from an earlier run, or older than the ring, is replayed from the database.
public final class EventBus: @unchecked Sendable {
    public let epoch: String
    public let ringCapacity: Int
    public let history: EventHistory?
    let encoder: LineEncoder
    private let lock = NSLock()
    private var ring: [EventEntry] = []   // (≤ ringCapacity), oldest at ringHead
    private var ringHead = 0
    private var seq: UInt64 = 0
    private var subscribers: [ObjectIdentifier: Subscription] = [:]
    private var taps: [@Sendable (DaemonEvent) -> Void] = []

    public init(epoch: String, ringCapacity: Int, history: EventHistory? = nil) {
        precondition(ringCapacity > 0, "EventBus ringCapacity must be positive, got \(ringCapacity)")
        self.epoch = epoch
        self.ringCapacity = ringCapacity
        self.history = history
        self.encoder = LineEncoder(epoch: epoch)
        ring.reserveCapacity(ringCapacity)
        history?.beginRun(epoch: epoch)
    }

    /// The seq of the last published event (0 before the first).
    public var latestSeq: UInt64 { lock.withLock { seq } }

    /// The oldest seq still in the ring (latestSeq + 1 when the ring is empty).
    public var oldestSeq: UInt64 { lock.withLock { oldestLocked } }

    public var subscriberCount: Int { lock.withLock { subscribers.count } }

    private var oldestLocked: UInt64 { ring.isEmpty ? seq + 1 : ring[ringHead].seq }

    /// Stamps the next seq on `event`, keeps it in the ring and queues it for every subscriber
    /// whose filter takes it. Never blocks on a subscriber. Returns the seq, or nil when the
    /// event cannot be encoded (a non-finite score): such an event is not published.
    /// A `hello` is per-connection and is not published: use `helloLine`.
    @discardableResult
    public func publish(_ event: DaemonEvent) -> UInt64? {
        if case .hello = event { return nil }
        guard let fields = try? encoder.payloadFields(event) else { return nil }
        var entry = EventEntry(seq: 0, line: "", type: event.type, camera: event.camera,
                               time: Date().timeIntervalSince1970)
        switch event {
        case .actionStart(let a), .actionUpdate(let a), .actionEnd(let a):
            entry.label = a.label; entry.score = a.score; entry.actionID = a.actionID
        default: break
        }
        lock.lock()
        defer { lock.unlock() }
        seq += 1
        entry.seq = seq
        entry.line = encoder.line(type: entry.type, seq: seq, fields: fields, time: entry.time)
        // Stored before any subscriber can have it: what a subscriber got survives a crash.
        if let history, EventHistory.keeps(entry.type) { history.record(entry) }
        if ring.count < ringCapacity {
            ring.append(entry)
        } else {
            ring[ringHead] = entry
            ringHead = (ringHead + 1) % ringCapacity
        }
        for sub in subscribers.values { sub.offer(entry) }
        for tap in taps { tap(event) }
        return seq
    }

    /// Hands every published event to `handler` in seq order, under the publication lock: it
    /// must only queue the event (the MQTT publisher does), never block or publish.
    public func tap(_ handler: @escaping @Sendable (DaemonEvent) -> Void) {
        lock.withLock { taps.append(handler) }
    }

    /// The `hello` line for a new connection and the `latest_seq` it carries (resume from
    /// there to miss nothing published after it).
    public func helloLine(_ hello: DaemonEvent.Hello) -> (line: String, latestSeq: UInt64) {
        let latest = latestSeq
        let fields = (try? encoder.payloadFields(.hello(hello))) ?? ""
        let line = encoder.line(type: "hello", seq: nil, fields: "\"latest_seq\":\(latest)" + (fields.isEmpty ? "" : "," + fields))
        return (line, latest)
    }

    /// A session `error` line.
    public func errorLine(_ message: String) -> String {
        encoder.line(type: "error", seq: nil, fields: "\"message\":\(LineEncoder.jsonString(message))")
    }

    /// Writes the history's pending events when an attempt is due (the daemon's timer).
    public func retryHistory() {
        lock.withLock { history?.retry() }
    }

    /// Adds a subscriber. With `since` from this epoch and `since.seq + 1` still in the ring (or
    /// nothing missed), its queue starts with the missed events `since.seq+1 … latest` that pass
    /// `filter`, then live ones, with no gap and no duplicate (replay and registration happen
    /// under the publication lock). A `since` from an earlier run, or older than the ring, is
    /// replayed from the `history` the same way (every event but `stats`): the bulk is read
    /// without the lock, the rest and the registration under it. Otherwise (no history, or
    /// older than it holds) the queue starts with a `resync` line, then live events.
    /// - Parameter queueCapacity: lines the subscriber may have queued before updates are
    ///   dropped and, with no update left to drop, it is disconnected.
    public func subscribe(filter: EventFilter = EventFilter(), since: ResumePoint? = nil,
                          queueCapacity: Int = 1024) -> Subscription {
        let sub = Subscription(bus: self, filter: filter, capacity: queueCapacity)
        lock.lock()
        defer { lock.unlock() }
        if let since {
            let inRing = since.epoch == epoch && since.seq + 1 >= oldestLocked
            if inRing && since.seq <= seq {
                var replay: [EventEntry] = []
                for i in 0..<ring.count {
                    let entry = ring[(ringHead + i) % ring.count]
                    if entry.seq > since.seq, sub.admits(entry) { replay.append(entry) }
                }
                sub.setReplay(replay.map(\.line))
            } else if !inRing, let history, let replay = replayFromHistory(history, after: since) {
                sub.setReplay(replay.filter { sub.admits($0) }.map(\.line))
            } else {
                sub.setReplay([encoder.line(type: "resync", seq: nil,
                                            fields: "\"oldest_seq\":\(oldestLocked),\"latest_seq\":\(seq)")])
            }
        }
        subscribers[ObjectIdentifier(sub)] = sub
        return sub
    }

    /// The events after `since` from `history`; called and returns under the lock, which it
    /// gives up while it reads the bulk of them.
    private func replayFromHistory(_ history: EventHistory, after since: ResumePoint) -> [EventEntry]? {
        lock.unlock()
        let stored = history.storedEvents(after: since)
        lock.lock()
        return stored.flatMap { history.replay(continuing: $0, after: since) }
    }

    /// `remove` for a caller that holds the lock (publish, via `Subscription.offer`).
    func removeLocked(_ sub: Subscription) { subscribers.removeValue(forKey: ObjectIdentifier(sub)) }

    func remove(_ sub: Subscription) {
        lock.withLock { _ = subscribers.removeValue(forKey: ObjectIdentifier(sub)) }
    }

    /// Ends every subscription: each drains what it has queued, then reports `.finished`.
    public func finishAll() {
        let subs = lock.withLock { Array(subscribers.values) }
        for sub in subs { sub.finish() }
    }

    func droppedLine(_ count: Int) -> String {
        encoder.line(type: "dropped", seq: nil, fields: "\"count\":\(count)")
    }
}
