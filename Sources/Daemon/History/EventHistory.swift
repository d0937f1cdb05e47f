import Foundation
import Logging

/// The daemon's event history. `EventBus.publish` hands it each event, under the bus lock,
/// before any subscriber is offered the line: a line a subscriber received was committed
/// first (see `EventStore` for what that survives), as long as writing works.
///
/// When a write fails (disk full, a file-size limit, a read-only file system) capture goes on:
/// the event still goes to subscribers and waits in memory (the newest `pendingCapacity`; older
/// ones are lost and counted) for the next attempt, `retryInterval` seconds later. Each change
/// between writing and failing is logged once; `counters` shows the rest (stats, metrics).
///
/// `stats` lines are not kept: they are a periodic snapshot that the next one replaces, they
/// would outnumber the actions on a quiet camera, and `m2clip events` asks what happened.
/// A replay from history therefore carries every event but `stats`.
public final class EventHistory: @unchecked Sendable {
    public struct Counters: Codable, Sendable, Equatable {
        /// Events written this run.
        public var stored = 0
        /// Write attempts that failed.
        public var writeFailures = 0
        /// Events waiting for the next attempt.
        public var pending = 0
        /// Events that never reached the database (the backlog was full).
        public var lost = 0
        /// False while writes fail.
        public var writing = true

        enum CodingKeys: String, CodingKey {
            case stored, pending, lost, writing
            case writeFailures = "write_failures"
        }
    }

    /// Replays longer than this answer `resync` instead of loading the lines into memory.
    public static let maxReplayLines = 100_000

    public let path: String
    public let retention: EventStore.Retention
    public let pendingCapacity: Int
    public let retryInterval: Double
    private let log: @Sendable (Logger.Level, String) -> Void
    private let lock = NSLock()
    private var store: EventStore?
    private var epoch: String?
    private var runRecorded = false
    private var pending: [EventEntry] = []
    private var state = Counters()
    private var nextAttempt = Date.distantPast
    /// The newest seq of this run that never reached the database; 0: none.
    private var lostThroughSeq: UInt64 = 0

    /// Opens (or creates) the database at `path`, applies `retention` and logs what it found.
    /// A database that cannot be opened leaves history failing (retried like a write), not
    /// the daemon stopped.
    public init(path: String, retention: EventStore.Retention, pendingCapacity: Int = 4096,
                retryInterval: Double = 5, log: @escaping @Sendable (Logger.Level, String) -> Void) {
        precondition(pendingCapacity > 0, "EventHistory pendingCapacity must be positive, got \(pendingCapacity)")
        self.path = path
        self.retention = retention
        self.pendingCapacity = pendingCapacity
        self.retryInterval = retryInterval
        self.log = log
        lock.withLock { _ = openLocked(now: Date()) }
        applyRetention()
    }

    /// Whether `type` is kept (everything but `stats`).
    static func keeps(_ type: String) -> Bool { type != "stats" }

    public var counters: Counters {
        lock.withLock {
            var c = state
            c.pending = pending.count
            return c
        }
    }

    /// The run whose events follow (called once, by the bus).
    func beginRun(epoch: String) {
        lock.withLock {
            self.epoch = epoch
            flushLocked(now: Date())
        }
    }

    /// Stores `entry` (the bus calls this under its lock, before offering the line), or keeps
    /// it for the next attempt while writes fail.
    func record(_ entry: EventEntry) {
        lock.withLock {
            pending.append(entry)
            if pending.count > pendingCapacity {
                lostThroughSeq = pending.removeFirst().seq
                state.lost += 1
            }
            let now = Date()
            if now >= nextAttempt { flushLocked(now: now) }
        }
    }

    /// Retries what is pending now when an attempt is due (the daemon calls this on a timer
    /// through `EventBus.retryHistory`, so a quiet camera's backlog is written too).
    func retry() {
        lock.withLock {
            let now = Date()
            if now >= nextAttempt { flushLocked(now: now) }
        }
    }

    /// The events after `point` that are in the database, read without the bus lock (it may
    /// be long); nil when history cannot serve the point.
    func storedEvents(after point: ResumePoint) -> (events: [EventStore.Event], throughID: Int64)? {
        guard let store = lock.withLock({ store }) else { return nil }
        return try? store.events(after: point, limit: Self.maxReplayLines)
    }

    /// Completes a replay under the bus lock: `stored` (from `storedEvents`), what was written
    /// since, then what is still pending. Nothing can be published meanwhile, so the
    /// subscriber registered next misses nothing and gets nothing twice. nil: answer resync.
    func replay(continuing stored: (events: [EventStore.Event], throughID: Int64), after point: ResumePoint) -> [EventEntry]? {
        lock.withLock {
            guard let store, let epoch else { return nil }
            let sameRun = point.epoch == epoch
            if lostThroughSeq > 0, !sameRun || point.seq < lostThroughSeq { return nil }
            guard let written = (try? store.events(afterID: stored.throughID)) ?? nil else { return nil }
            let held = pending.filter { !sameRun || $0.seq > point.seq }
            let count = stored.events.count + written.count + held.count
            guard count <= Self.maxReplayLines else { return nil }
            return stored.events.map(\.entry) + written.map(\.entry) + held
        }
    }

    /// Deletes what `retention` no longer keeps (at start and on the daemon's timer).
    public func applyRetention(now: Date = Date()) {
        guard let store = lock.withLock({ store }) else { return }
        do {
            let deleted = try store.applyRetention(retention, now: now)
            if deleted > 0 { log(.info, "history: retention deleted \(deleted) old event(s) from \(path)") }
        } catch {
            log(.error, "history: retention: \(error)")
        }
    }

    /// Writes what is pending (one last attempt) and closes the database.
    public func close() {
        lock.withLock {
            flushLocked(now: Date())
            if !pending.isEmpty { log(.error, "history: \(pending.count) event(s) could not be written to \(path) before exit") }
            store?.close()
            store = nil
        }
    }

    private func openLocked(now: Date) -> EventStore? {
        if let store { return store }
        do {
            let (opened, found) = try EventStore.open(path: path, now: now)
            log(.info, "history: \(found)")
            store = opened
            return opened
        } catch {
            fail(error, now: now)
            return nil
        }
    }

    private func flushLocked(now: Date) {
        guard let store = openLocked(now: now) else { return }
        do {
            if !runRecorded, let epoch {
                try store.beginRun(epoch: epoch, started: now)
                runRecorded = true
            }
            guard !pending.isEmpty else { return }
            try store.insert(pending, epoch: epoch ?? "")
            state.stored += pending.count
            if !state.writing {
                log(.notice, "history: writing \(path) again (\(pending.count) pending event(s) stored)")
                state.writing = true
            }
            pending.removeAll()
        } catch {
            fail(error, now: now)
        }
    }

    private func fail(_ error: Error, now: Date) {
        state.writeFailures += 1
        nextAttempt = now.addingTimeInterval(retryInterval)
        if state.writing {
            // `error` is a HistoryError, which names the file.
            log(.error, "\(error); events still reach subscribers, up to \(pendingCapacity) wait in memory, "
                + "retrying every \(retryInterval) s")
            state.writing = false
        }
    }
}
