import Foundation
import Logging
import Video

/// Encodes and writes action snapshots on a thread of its own, so JPEG encoding and a slow or
/// full disk never hold up capture or inference.
///
/// `submit` queues a job (the action's new best frame) in a bounded queue: a newer job for an
/// action already queued replaces it (only the best frame matters), and when the queue is full
/// the job is dropped and counted. Each file is written whole or not at all
/// (`SnapshotFileSystem.writeAtomically`) as `<directory>/<camera>/<YYYY-MM-DD>/<action_id>.jpg`
/// (UTC date of the frame); a later, better frame of the same action replaces it. A failed
/// write is counted and logged with the file name. Retention (`SnapshotRetention`) runs when
/// the writer starts, every `retentionInterval` seconds, and whenever the files written
/// exceed the byte budget.
public final class SnapshotWriter: @unchecked Sendable {
    /// One frame to write.
    public struct Job: Sendable {
        public var actionID: String
        public var camera: String
        public var label: String
        public var score: Float
        /// Capture time of `frame`, seconds since 1970.
        public var frameTime: Double
        public var frame: RGBFrame

        public init(actionID: String, camera: String, label: String, score: Float, frameTime: Double, frame: RGBFrame) {
            self.actionID = actionID
            self.camera = camera
            self.label = label
            self.score = score
            self.frameTime = frameTime
            self.frame = frame
        }
    }

    public typealias Counters = RetainedFileCounters

    public let configuration: DaemonConfiguration.Snapshots
    /// `<state_dir>/snapshots`.
    public let directory: String
    public let capacity: Int
    let retentionInterval: Double
    private let fileSystem: SnapshotFileSystem
    private let log: @Sendable (Logger.Level, String) -> Void
    private let written: @Sendable (Job, DaemonEvent.Snapshot, [UInt8]) -> Void

    private let lock = NSCondition()
    // Guarded by `lock`:
    private var queue: [Job] = []
    private var busy: String?               // action id being encoded or written
    private var latest: [String: DaemonEvent.Snapshot] = [:]
    /// Actions whose end was announced while a job of theirs was queued or being written.
    private var ended: Set<String> = []
    private var counters = Counters()
    /// On the writer's thread only.
    private var retained: RetainedDirectory
    private var stopping = false
    private var finished = false
    private var started = false

    /// - Parameters:
    ///   - capacity: jobs waiting, at most.
    ///   - written: after each file is on disk, on the writer's thread (MQTT publishes it).
    init(configuration: DaemonConfiguration.Snapshots, directory: String, capacity: Int = 8,
         retentionInterval: Double = 600, fileSystem: SnapshotFileSystem = .system,
         log: @escaping @Sendable (Logger.Level, String) -> Void,
         written: @escaping @Sendable (Job, DaemonEvent.Snapshot, [UInt8]) -> Void = { _, _, _ in }) {
        precondition(capacity > 0, "SnapshotWriter capacity must be positive, got \(capacity)")
        self.configuration = configuration
        self.directory = directory
        self.capacity = capacity
        self.retentionInterval = retentionInterval
        retained = RetainedDirectory(directory: directory, retentionDays: configuration.retentionDays,
                                     maxBytes: configuration.maxBytes)
        self.fileSystem = fileSystem
        self.log = log
        self.written = written
    }

    /// The writer for `state_dir`'s snapshots.
    public convenience init(configuration: DaemonConfiguration.Snapshots, stateDirectory: String,
                            log: @escaping @Sendable (Logger.Level, String) -> Void,
                            written: @escaping @Sendable (Job, DaemonEvent.Snapshot, [UInt8]) -> Void = { _, _, _ in }) {
        self.init(configuration: configuration, directory: stateDirectory + "/snapshots", log: log, written: written)
    }

    public var totals: Counters { lock.withLock { counters } }

    /// Starts the writer's thread (retention runs first on it).
    public func start() {
        lock.withLock {
            precondition(!started, "SnapshotWriter started twice")
            started = true
        }
        let thread = Thread { [self] in run() }
        thread.name = "m2clipd.snapshots"
        thread.start()
    }

    /// Queues `job`; false when it was dropped (queue full). Never blocks on the disk.
    @discardableResult
    public func submit(_ job: Job) -> Bool {
        lock.withLock {
            guard !stopping else { return false }
            if let i = queue.firstIndex(where: { $0.actionID == job.actionID }) {
                queue[i] = job
                return true
            }
            guard queue.count < capacity else {
                counters.dropped += 1
                return false
            }
            queue.append(job)
            lock.broadcast()
            return true
        }
    }

    /// The snapshot on disk for `actionID`, for its next event. `ending`: the action's end
    /// event; the writer then forgets it (a job still pending writes its file and calls
    /// `written`, but no event names that version).
    public func snapshot(for actionID: String, ending: Bool = false) -> DaemonEvent.Snapshot? {
        lock.withLock {
            guard ending else { return latest[actionID] }
            if busy == actionID || queue.contains(where: { $0.actionID == actionID }) { ended.insert(actionID) }
            return latest.removeValue(forKey: actionID)
        }
    }

    /// Writes what is queued, then stops the thread; waits up to `timeout` seconds.
    public func stop(timeout: Double) {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.withLock {
            stopping = true
            lock.broadcast()
            while started && !finished && lock.wait(until: deadline) {}
        }
    }

    /// Waits until nothing is queued or being written; false on timeout. For tests and the end
    /// of a file camera.
    @discardableResult
    public func waitIdle(timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        return lock.withLock {
            while !(queue.isEmpty && busy == nil) {
                if !lock.wait(until: deadline) { return queue.isEmpty && busy == nil }
            }
            return true
        }
    }

    /// `<directory>/<camera>/<YYYY-MM-DD>/<action_id>.jpg`, names made safe as one path
    /// component each.
    public func path(for job: Job) -> String {
        "\(directory)/\(Self.component(job.camera))/\(Self.day(job.frameTime))/\(Self.component(job.actionID)).jpg"
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

    // MARK: - Writer thread

    private func run() {
        let encoder = JPEGEncoder(quality: configuration.quality, maxWidth: configuration.maxWidth)
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        prune()
        var nextRetention = MonotonicClock.now() + retentionInterval
        while true {
            let job: Job? = lock.withLock {
                while queue.isEmpty && !stopping {
                    let wait = nextRetention - MonotonicClock.now()
                    if wait <= 0 || !lock.wait(until: Date(timeIntervalSinceNow: wait)) { return nil }
                }
                guard !queue.isEmpty else { return nil }
                let job = queue.removeFirst()
                busy = job.actionID
                return job
            }
            if let job {
                write(job, encoder)
                lock.withLock {
                    busy = nil
                    ended.remove(job.actionID)
                    lock.broadcast()
                }
                if retained.isOverBudget { prune() }
            } else if lock.withLock({ stopping }) {
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

    private func write(_ job: Job, _ encoder: JPEGEncoder) {
        let path = path(for: job)
        do {
            let jpeg = try encoder.encode(job.frame)
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            let previous = (attributes?[.size] as? NSNumber)?.int64Value ?? 0
            try fileSystem.writeAtomically(jpeg, to: path)
            let snapshot = DaemonEvent.Snapshot(path: path, frameTime: job.frameTime, score: job.score)
            retained.wrote(Int64(jpeg.count) - previous)
            lock.withLock {
                counters.written += 1
                if !ended.contains(job.actionID) { latest[job.actionID] = snapshot }
            }
            written(job, snapshot, jpeg)
        } catch {
            lock.withLock { counters.failed += 1 }
            log(.error, "snapshot \(path): \(error)")
        }
    }

    private func prune() {
        let deleted = retained.prune(log: log)
        lock.withLock { counters.deleted += deleted }
    }
}
