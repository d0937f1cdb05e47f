import Foundation
import Logging
import SafeTensors

/// What the snapshot and clip writers share: a bounded queue of jobs, each made into one file
/// under `directory` on a thread of its own (so encoding and a slow or full disk never hold up
/// capture or inference), counted, and retention of the directory (`RetainedDirectory`: by
/// age and bytes) when the thread starts, every `retentionInterval` seconds and whenever the
/// files written exceed the byte budget.
///
/// A subclass says when a job can be written (`isReady`), writes it (`write`: the bytes it
/// added, nil when it failed, having logged why; the file itself through `store`, whole or not
/// at all) and may keep state of its own under `lock` (`didFinish`, called under it after each job).
public class RetainedFileWriter<Job>: @unchecked Sendable {
    /// How `enqueue` went.
    enum Enqueued {
        case queued
        /// Dropped and counted: `capacity` jobs wait already.
        case full
        /// The writer is stopping.
        case stopped
    }

    public typealias Counters = RetainedFileCounters

    public let directory: String
    public let capacity: Int
    let retentionInterval: Double
    let log: @Sendable (Logger.Level, String) -> Void
    /// The system calls files are written with (tests script a full disk).
    let calls: FileCalls
    private let threadName: String

    /// Guards the queue, the counters and subclasses' shared state.
    let lock = NSCondition()
    private(set) var queue: [Job] = []
    /// The job being written.
    private(set) var writing: Job?
    private var counters = Counters()
    private var started = false
    private var stopping = false
    private var finished = false
    /// On the writer's thread only.
    private var retained: RetainedDirectory

    init(threadName: String, directory: String, retentionDays: Double, maxBytes: Int64, capacity: Int,
         retentionInterval: Double, calls: FileCalls, log: @escaping @Sendable (Logger.Level, String) -> Void) {
        precondition(capacity > 0, "\(threadName): capacity must be positive, got \(capacity)")
        self.threadName = threadName
        self.directory = directory
        self.capacity = capacity
        self.retentionInterval = retentionInterval
        self.log = log
        self.calls = calls
        retained = RetainedDirectory(directory: directory, retentionDays: retentionDays, maxBytes: maxBytes)
    }

    public var totals: Counters { lock.withLock { counters } }

    /// Starts the writer's thread (retention runs first on it).
    public func start() {
        lock.withLock {
            precondition(!started, "\(threadName) started twice")
            started = true
        }
        let thread = Thread { [self] in run() }
        thread.name = threadName
        thread.start()
    }

    /// Writes what is queued (each job once it is ready), then stops the thread; waits up to
    /// `timeout` seconds.
    public func stop(timeout: Double) {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.withLock {
            stopping = true
            lock.broadcast()
            while started && !finished && lock.wait(until: deadline) {}
        }
    }

    /// Waits until nothing is queued or being written; false on timeout.
    @discardableResult
    public func waitIdle(timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        return lock.withLock {
            while !(queue.isEmpty && writing == nil) {
                if !lock.wait(until: deadline) { return queue.isEmpty && writing == nil }
            }
            return true
        }
    }

    /// Queues `job`, in place of the first waiting job `replaces` matches, if any. Called
    /// under `lock`. Never blocks on the disk.
    func enqueue(_ job: Job, replacing replaces: (Job) -> Bool = { _ in false }) -> Enqueued {
        guard !stopping else { return .stopped }
        if let i = queue.firstIndex(where: replaces) {
            queue[i] = job
            return .queued
        }
        guard queue.count < capacity else {
            counters.dropped += 1
            return .full
        }
        queue.append(job)
        lock.broadcast()
        return .queued
    }

    // MARK: - What subclasses provide

    /// Whether `job` can be written now (`now`: seconds since 1970). Called under `lock`.
    func isReady(_ job: Job, now: Double) -> Bool { true }

    /// Makes and writes `job`'s file, on the writer's thread: the bytes it added to the
    /// directory, or nil when it failed (logged with the file name).
    func write(_ job: Job) -> Int64? { preconditionFailure("\(threadName): write(_:) not provided") }

    /// `<directory>/<camera>/<YYYY-MM-DD>/<name>.<ext>`: the UTC day of `time` (seconds since
    /// 1970), names made safe as one path component each.
    func filePath(camera: String, time: Double, name: String, ext: String) -> String {
        "\(directory)/\(Self.component(camera))/\(Self.day(time))/\(Self.component(name)).\(ext)"
    }

    /// `YYYY-MM-DD`, the UTC day of `time` (seconds since 1970).
    static func day(_ time: Double) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: Date(timeIntervalSince1970: time))
        return String(format: "%04d-%02d-%02d", parts.year ?? 1970, parts.month ?? 1, parts.day ?? 1)
    }

    /// `name` as one file name: `/`, control characters and a leading dot become `_`.
    static func component(_ name: String) -> String {
        var mapped = String(name.unicodeScalars.map { s -> Character in
            s == "/" || s.value < 0x20 || s.value == 0x7f ? "_" : Character(s)
        })
        if mapped.hasPrefix(".") { mapped = "_" + mapped.dropFirst() }
        return mapped.isEmpty ? "_" : mapped
    }

    /// Puts `bytes` at `path` (its directories created) whole or not at all (`AtomicFile`).
    /// Temporary files a crash left are not looked for on each write: retention deletes them
    /// (at start and every `retentionInterval`).
    func store(_ bytes: [UInt8], at path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try AtomicFile.write([bytes], to: path, removingLeftovers: false, calls: calls)
    }

    /// After each job, written or not. Called under `lock`.
    func didFinish(_ job: Job) {}

    // MARK: - Writer thread

    private func run() {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        prune()
        var nextRetention = MonotonicClock.now() + retentionInterval
        while true {
            let job: Job? = lock.withLock {
                while true {
                    // At stop, the sources have ended: every job is ready or soon past its grace.
                    let now = Date().timeIntervalSince1970
                    if let i = queue.firstIndex(where: { isReady($0, now: now) }) {
                        writing = queue.remove(at: i)
                        return writing
                    }
                    if queue.isEmpty && stopping { return nil }
                    let wait = min(nextRetention - MonotonicClock.now(), queue.isEmpty ? 3600 : 0.1)
                    if wait <= 0 { return nil }
                    _ = lock.wait(until: Date(timeIntervalSinceNow: wait))
                }
            }
            if let job {
                let added = write(job)
                if let added { retained.wrote(added) }
                lock.withLock { if added != nil { counters.written += 1 } else { counters.failed += 1 } }
                // Before the job counts as done, so an idle writer has applied its budget.
                if retained.isOverBudget { prune() }
                lock.withLock {
                    writing = nil
                    didFinish(job)
                    lock.broadcast()
                }
            } else if lock.withLock({ stopping && queue.isEmpty }) {
                lock.withLock {
                    finished = true
                    lock.broadcast()
                }
                return
            }
            if MonotonicClock.now() >= nextRetention {
                prune()
                nextRetention = MonotonicClock.now() + retentionInterval
            }
        }
    }

    private func prune() {
        let deleted = retained.prune(log: log)
        lock.withLock { counters.deleted += deleted }
    }
}
