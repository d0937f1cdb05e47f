import Foundation

/// One subscriber's bounded queue of lines, filled by `EventBus.publish` and drained by a
/// writer (`next`). When it is full, the oldest queued `action.update` is dropped to make room
/// (the reader then gets a `dropped` line with the count before the next line); when there is
/// no update left to drop, the subscriber is disconnected: start/end lines are never dropped
/// silently.
public final class Subscription: @unchecked Sendable {
    public enum CloseReason: Equatable, Sendable {
        /// The queue overflowed with no update to drop.
        case overflow
        /// `EventBus.finishAll` (daemon shutdown) and everything queued was read.
        case finished
        /// `cancel()`.
        case cancelled
    }

    public enum Next: Equatable, Sendable {
        case line(String)
        case closed(CloseReason)
        case timedOut
    }

    public let capacity: Int
    public let filter: EventFilter
    private weak var bus: EventBus?
    private let condition = NSCondition()
    private var replay: [String] = []
    private var replayIndex = 0
    private var queue: [(line: String, isUpdate: Bool)] = []  // (≤ capacity), FIFO from queueHead
    private var queueHead = 0
    private var dropped = 0
    private var finishing = false
    private var closed: CloseReason?
    /// Actions whose start (or first seen line) passed the filter: their updates and end are
    /// delivered even if the score later falls below min_score. Guarded by the bus lock.
    private var admittedActions: Set<String> = []

    init(bus: EventBus, filter: EventFilter, capacity: Int) {
        precondition(capacity > 0, "Subscription capacity must be positive, got \(capacity)")
        self.bus = bus; self.filter = filter; self.capacity = capacity
    }

    /// Lines dropped so far and not yet reported.
    public var pendingDropped: Int { condition.withLock { dropped } }
    public var closeReason: CloseReason? { condition.withLock { closed } }

    /// Filter decision; called under the bus lock, so `admittedActions` needs no lock of its own.
    func admits(_ e: EventEntry) -> Bool {
        if let camera = e.camera, !filter.cameras.isEmpty, !filter.cameras.contains(camera) { return false }
        guard let id = e.actionID else { return true }
        if e.type != "action.start", admittedActions.contains(id) {
            if e.type == "action.end" { admittedActions.remove(id) }
            return true
        }
        if let label = e.label, !filter.labels.isEmpty, !filter.labels.contains(label) { return false }
        if let minScore = filter.minScore, let score = e.score, score < minScore { return false }
        if e.type != "action.end" { admittedActions.insert(id) }
        return true
    }

    func setReplay(_ lines: [String]) {
        condition.withLock { replay = lines; replayIndex = 0 }
    }

    /// Queues `entry` if the filter takes it; called by `EventBus.publish` under its lock.
    func offer(_ entry: EventEntry) {
        guard admits(entry) else { return }
        condition.lock()
        defer { condition.unlock() }
        guard closed == nil, !finishing else { return }
        if queue.count - queueHead >= capacity {
            guard let i = queue[queueHead...].firstIndex(where: \.isUpdate) else {
                closed = .overflow
                queue.removeAll(); queueHead = 0; replay.removeAll(); replayIndex = 0
                condition.broadcast()
                bus?.removeLocked(self)
                return
            }
            queue.remove(at: i)
            dropped += 1
        }
        queue.append((entry.line, entry.isUpdate))
        condition.signal()
    }

    /// The next line: a pending `dropped` notice first, then replayed lines, then queued ones.
    /// Waits up to `timeout` seconds (nil: forever) for one.
    public func next(timeout: Double? = nil) -> Next {
        let deadline = timeout.map { Date(timeIntervalSinceNow: $0) }
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let closed { return .closed(closed) }
            if replayIndex < replay.count {
                replayIndex += 1
                return .line(replay[replayIndex - 1])
            }
            if dropped > 0, let bus {
                let count = dropped
                dropped = 0
                return .line(bus.droppedLine(count))
            }
            if queueHead < queue.count {
                let line = queue[queueHead].line
                queueHead += 1
                if queueHead > 1024 && queueHead * 2 > queue.count {
                    queue.removeFirst(queueHead); queueHead = 0
                }
                return .line(line)
            }
            if finishing {
                closed = .finished
                return .closed(.finished)
            }
            if let deadline {
                if !condition.wait(until: deadline) { return .timedOut }
            } else {
                condition.wait()
            }
        }
    }

    /// Stops delivery once what is queued has been read.
    func finishOnStop() { finish() }

    /// Stops delivery once what is queued has been read.
    func finish() {
        condition.withLock { finishing = true; condition.broadcast() }
        bus?.remove(self)
    }

    /// Unsubscribes now; queued lines are discarded.
    public func cancel() {
        condition.withLock {
            if closed == nil { closed = .cancelled }
            queue.removeAll(); queueHead = 0
            condition.broadcast()
        }
        bus?.remove(self)
    }
}
