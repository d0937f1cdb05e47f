import Foundation
import GRDB

/// Published event lines in SQLite (`<state_dir>/events.sqlite`), exactly as subscribers got
/// them, with what queries and subscriber filters need beside each.
///
/// Durability: WAL journal with `synchronous = NORMAL`. A commit has been written to the WAL
/// file (in the kernel) when `insert` returns, so a crash of the process (kill -9) loses no
/// committed event; only a power cut can lose the last commits since the previous checkpoint,
/// never tear the database. FULL would add an fsync per event on the publish path, which a
/// camera pipeline on an SD card would feel. A failed write (disk full, EFBIG, read-only) rolls
/// its transaction back whole.
///
/// Rows keep the order of publication (`id`, never reused); retention deletes oldest first and
/// remembers the last id it deleted, so a resume point is either fully served or known lost.
public final class EventStore: @unchecked Sendable {
    public static let fileName = "events.sqlite"

    /// How much history to keep; oldest first by age, then by size.
    public struct Retention: Sendable, Equatable {
        public var maxAgeSeconds: Double
        public var maxBytes: Int64
        public init(maxAgeSeconds: Double, maxBytes: Int64) { self.maxAgeSeconds = maxAgeSeconds; self.maxBytes = maxBytes }
    }

    /// One stored line and its columns.
    public struct Event: Sendable, Equatable {
        public var id: Int64
        public var epoch: String
        public var seq: UInt64
        public var type: String
        public var camera: String?
        public var label: String?
        public var score: Float?
        public var actionID: String?
        /// The line's `ts`, seconds since 1970.
        public var time: Double
        /// The NDJSON line with its newline, byte for byte as published.
        public var line: String

        var entry: EventEntry {
            EventEntry(seq: seq, line: line, type: type, camera: camera, label: label, score: score,
                       actionID: actionID, time: time)
        }
    }

    /// What `m2clip events` asks for. Empty lists mean all; `limit` keeps the newest N.
    public struct Query: Sendable, Equatable {
        public var cameras: [String] = []
        public var labels: [String] = []
        public var since: Date?
        public var until: Date?
        public var limit: Int?
        public init(cameras: [String] = [], labels: [String] = [], since: Date? = nil, until: Date? = nil, limit: Int? = nil) {
            self.cameras = cameras; self.labels = labels; self.since = since; self.until = until; self.limit = limit
        }
    }

    public let path: String
    private let pool: DatabasePool

    private init(path: String, pool: DatabasePool) {
        self.path = path
        self.pool = pool
    }

    /// Opens (or creates) the database at `path` for writing. A file SQLite finds corrupt or
    /// not a database is moved aside to `<path>.corrupt-<time>` (with its -wal and -shm) and a
    /// fresh one is started: users' data is never deleted. `found` says what happened, for the
    /// daemon's log.
    public static func open(path: String, now: Date = Date()) throws -> (store: EventStore, found: String) {
        do {
            let store = try openChecked(path: path)
            return (store, try store.summary())
        } catch let error as DatabaseError where isCorruption(error) {
            let aside = path + ".corrupt-" + fileTimestamp(now)
            for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                do {
                    try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
                } catch {
                    throw HistoryError(path: path, "is corrupt (\(error.localizedDescription)) and cannot be moved aside to \(aside + suffix)")
                }
            }
            let store: EventStore
            do { store = try openChecked(path: path) } catch { throw HistoryError(path: path, "cannot open: \(describe(error))") }
            return (store, "\(path) was unreadable (\(describe(error))); moved it to \(aside) and started a new history")
        } catch let error as HistoryError {
            throw error
        } catch {
            throw HistoryError(path: path, "cannot open: \(describe(error))")
        }
    }

    /// Opens an existing database read-only (`m2clip events` while the daemon writes).
    public static func openReadOnly(path: String) throws -> EventStore {
        guard FileManager.default.fileExists(atPath: path) else { throw HistoryError(path: path, "no event history (the file does not exist)") }
        var configuration = Configuration()
        configuration.readonly = true
        do {
            return EventStore(path: path, pool: try DatabasePool(path: path, configuration: configuration))
        } catch {
            throw HistoryError(path: path, "cannot open: \(describe(error))")
        }
    }

    private static func openChecked(path: String) throws -> EventStore {
        let pool = try DatabasePool(path: path)
        // On the one writer connection. auto_vacuum only takes on a new file (before the first
        // table): it lets retention give freed pages back with incremental_vacuum.
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE events(
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    epoch TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
                    camera TEXT, label TEXT, score REAL, action_id TEXT,
                    time REAL NOT NULL, line TEXT NOT NULL);
                CREATE INDEX events_epoch_seq ON events(epoch, seq);
                CREATE INDEX events_time ON events(time);
                CREATE TABLE runs(epoch TEXT PRIMARY KEY, started REAL NOT NULL, first_id INTEGER NOT NULL);
                CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                """)
        }
        try migrator.migrate(pool)
        let check = try pool.read { try String.fetchOne($0, sql: "PRAGMA quick_check") }
        guard check == "ok" else {
            throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "quick_check: \(check ?? "no answer")")
        }
        return EventStore(path: path, pool: pool)
    }

    static func isCorruption(_ error: DatabaseError) -> Bool {
        error.resultCode == .SQLITE_CORRUPT || error.resultCode == .SQLITE_NOTADB
    }

    static func describe(_ error: Error) -> String {
        guard let error = error as? DatabaseError else { return "\(error)" }
        return error.message.map { "\($0) (\(error.resultCode))" } ?? "\(error.resultCode)"
    }

    static func fileTimestamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: date)
    }

    /// "N events of M runs, oldest …" for the start-up log.
    func summary() throws -> String {
        try pool.read { db in
            let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0
            let runs = try Int.fetchOne(db, sql: "SELECT count(*) FROM runs") ?? 0
            let oldest = try Double.fetchOne(db, sql: "SELECT min(time) FROM events")
            return "\(path): \(count) event(s) of \(runs) run(s)"
                + (oldest.map { ", oldest \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0)))" } ?? "")
        }
    }

    /// Records the start of run `epoch`: its events are the ones from the next id on.
    func beginRun(epoch: String, started: Date) throws {
        try write { db in
            let next = (try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'events'") ?? 0) + 1
            try db.execute(sql: "INSERT OR IGNORE INTO runs(epoch, started, first_id) VALUES (?, ?, ?)",
                           arguments: [epoch, started.timeIntervalSince1970, next])
        }
    }

    /// Appends `entries` of run `epoch` in one transaction: all or none.
    func insert(_ entries: [EventEntry], epoch: String) throws {
        try write { db in
            let statement = try db.cachedStatement(sql: """
                INSERT INTO events(epoch, seq, type, camera, label, score, action_id, time, line)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for e in entries {
                try statement.execute(arguments: [epoch, Int64(e.seq), e.type, e.camera, e.label,
                                                  e.score.map { Double($0) }, e.actionID, e.time, e.line])
            }
        }
    }

    /// The events published after `point`, oldest first, and the last id looked at (the
    /// anchor when there are none); nil when history no longer holds everything after it (or
    /// never knew its run), or holds more than `limit`: the caller answers `resync`.
    func events(after point: ResumePoint, limit: Int) throws -> (events: [Event], throughID: Int64)? {
        try read { db in
            let seq = Int64(clamping: point.seq)
            let firstID: Int64
            if let anchor = try Int64.fetchOne(db, sql: "SELECT max(id) FROM events WHERE epoch = ? AND seq <= ?",
                                               arguments: [point.epoch, seq]) {
                firstID = anchor + 1
            } else {
                // Nothing of that run at or before the point: served only if none of the run was deleted.
                guard let runStart = try Int64.fetchOne(db, sql: "SELECT first_id FROM runs WHERE epoch = ?", arguments: [point.epoch]),
                      runStart > (try Self.deletedThrough(db)) else { return nil }
                firstID = runStart
            }
            let events = try Self.fetch(db, sql: "SELECT * FROM events WHERE id >= ? ORDER BY id LIMIT ?",
                                        arguments: [firstID, limit + 1])
            guard events.count <= limit else { return nil }
            return (events, events.last?.id ?? firstID - 1)
        }
    }

    /// Events with an id above `id`, oldest first; nil when retention has deleted past `id`
    /// meanwhile (some of them are gone).
    func events(afterID id: Int64) throws -> [Event]? {
        try read { db in
            guard try Self.deletedThrough(db) <= id else { return nil }
            return try Self.fetch(db, sql: "SELECT * FROM events WHERE id > ? ORDER BY id", arguments: [id])
        }
    }

    /// The events `query` selects, oldest first (the newest `limit` of them).
    public func events(_ query: Query) throws -> [Event] {
        var conditions: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        if !query.cameras.isEmpty {
            conditions.append("camera IN (" + query.cameras.map { _ in "?" }.joined(separator: ",") + ")")
            arguments += query.cameras
        }
        if !query.labels.isEmpty {
            conditions.append("label IN (" + query.labels.map { _ in "?" }.joined(separator: ",") + ")")
            arguments += query.labels
        }
        if let since = query.since { conditions.append("time >= ?"); arguments.append(since.timeIntervalSince1970) }
        if let until = query.until { conditions.append("time <= ?"); arguments.append(until.timeIntervalSince1970) }
        var sql = "SELECT * FROM events" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
        if let limit = query.limit {
            sql = "SELECT * FROM (\(sql) ORDER BY id DESC LIMIT \(max(limit, 0)))"
        }
        sql += " ORDER BY id"
        let statementArguments = StatementArguments(arguments)
        return try read { try Self.fetch($0, sql: sql, arguments: statementArguments) }
    }

    public func count() throws -> Int { try read { try Int.fetchOne($0, sql: "SELECT count(*) FROM events") ?? 0 } }

    /// Deletes events older than `retention.maxAgeSeconds`, then the oldest while the events
    /// take more than `retention.maxBytes`, in batches so a publisher waiting to write is not
    /// held long. Returns how many were deleted.
    @discardableResult
    func applyRetention(_ retention: Retention, now: Date = Date()) throws -> Int {
        let cutoff = now.timeIntervalSince1970 - retention.maxAgeSeconds
        var deleted = 0
        while true {
            // Oldest first by id: everything up to the newest expired row of this batch.
            let n = try deleteOldest(upTo: "SELECT max(id) FROM (SELECT id FROM events WHERE time < ? ORDER BY id LIMIT 1000)",
                                     arguments: [cutoff])
            deleted += n
            if n == 0 { break }
        }
        while case let used = try usedBytes(), used > retention.maxBytes {
            // As many of the oldest as the excess is of the whole, at most 1000 at a time.
            let fraction = Double(used - retention.maxBytes) / Double(used)
            let rows = min(1000, max(1, Int((Double(try count()) * fraction).rounded(.up))))
            let n = try deleteOldest(upTo: "SELECT max(id) FROM (SELECT id FROM events ORDER BY id LIMIT ?)", arguments: [rows])
            deleted += n
            if n == 0 { break }
        }
        if deleted > 0 {
            try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA incremental_vacuum") }
        }
        return deleted
    }

    /// Bytes the database's pages in use take (free pages excluded).
    func usedBytes() throws -> Int64 {
        try read { db in
            let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            let size = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
            return (pages - free) * size
        }
    }

    private func deleteOldest(upTo bound: String, arguments: StatementArguments) throws -> Int {
        try write { db in
            guard let last = try Int64.fetchOne(db, sql: bound, arguments: arguments) else { return 0 }
            try db.execute(sql: "DELETE FROM events WHERE id <= ?", arguments: [last])
            let n = db.changesCount
            try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('deleted_through', ?) "
                           + "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)", arguments: [last])
            return n
        }
    }

    private static func deletedThrough(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'deleted_through'") ?? 0
    }

    private static func fetch(_ db: Database, sql: String, arguments: StatementArguments) throws -> [Event] {
        try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
            Event(id: row["id"], epoch: row["epoch"], seq: UInt64(clamping: row["seq"] as Int64), type: row["type"],
                  camera: row["camera"], label: row["label"], score: (row["score"] as Double?).map(Float.init),
                  actionID: row["action_id"], time: row["time"], line: row["line"])
        }
    }

    /// Closes the database (checkpointing the WAL when it is the last connection).
    public func close() { try? pool.close() }

    private func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.read(body) } catch { throw HistoryError(path: path, "read failed: \(Self.describe(error))") }
    }

    private func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.write(body) } catch { throw HistoryError(path: path, "write failed: \(Self.describe(error))") }
    }
}

/// A history problem, naming the database file: `history /var/lib/m2clipd/events.sqlite:
/// write failed: database or disk is full (SQLITE_FULL)`.
public struct HistoryError: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "history \(path): \(message)" }
}
