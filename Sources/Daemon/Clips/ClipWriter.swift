import Foundation
import Logging
import Video

/// Writes action clips on a thread of its own: MP4s of a camera's packets (`ClipRecorder`:
/// its own H.264, copied, or encoded from its frames) from `pre_roll_s` before an action to `post_roll_s` after it.
///
/// `submit` (at the action's end) fixes the file's path, which the `action.end` event names,
/// and queues the job in a bounded queue (full: dropped and counted). The writer waits until
/// the camera's packets reach the end of the post-roll, the source ends, or `grace` seconds
/// past it on the wall clock (a stalled camera), then muxes in memory (`MP4Muxer`, at most
/// the camera buffer's size) and writes the file whole or not at all
/// (`SnapshotFileSystem.writeAtomically`) as `<directory>/<camera>/<YYYY-MM-DD>/<action_id>.mp4`
/// (UTC day of the action's end). A failure (nothing buffered, a full disk) is counted and
/// logged naming the file. Retention (`SnapshotRetention`, with the clips' days and bytes) runs
/// at start, every `retentionInterval` seconds and when the clips exceed their byte budget.
public final class ClipWriter: @unchecked Sendable {
    struct Job {
        var actionID: String
        var path: String
        /// Capture times, seconds since 1970: the action's span with the rolls.
        var from: Double
        var to: Double
        var recorder: ClipRecorder
    }

    public typealias Counters = RetainedFileCounters

    /// What the writer has put on disk, for tests and logs.
    struct Written: Equatable {
        var actionID: String
        var path: String
        var start: Double
        var end: Double
        var bytes: Int
        var packets: Int
    }

    public let configuration: DaemonConfiguration.Clips
    /// `<state_dir>/clips`.
    public let directory: String
    let capacity: Int
    let grace: Double
    let retentionInterval: Double
    private let fileSystem: SnapshotFileSystem
    private let log: @Sendable (Logger.Level, String) -> Void
    private let written: @Sendable (Written) -> Void

    private let lock = NSCondition()
    private var queue: [Job] = []
    private var busy = false
    private var counters = Counters()
    /// On the writer's thread only.
    private var retained: RetainedDirectory
    private var stopping = false
    private var started = false
    private var finished = false

    init(configuration: DaemonConfiguration.Clips, directory: String, capacity: Int = 16, grace: Double = 5,
         retentionInterval: Double = 600, fileSystem: SnapshotFileSystem = .system,
         log: @escaping @Sendable (Logger.Level, String) -> Void,
         written: @escaping @Sendable (Written) -> Void = { _ in }) {
        precondition(capacity > 0, "ClipWriter capacity must be positive, got \(capacity)")
        self.configuration = configuration
        self.directory = directory
        self.capacity = capacity
        self.grace = grace
        self.retentionInterval = retentionInterval
        retained = RetainedDirectory(directory: directory, retentionDays: configuration.retentionDays,
                                     maxBytes: configuration.maxBytes)
        self.fileSystem = fileSystem
        self.log = log
        self.written = written
    }

    /// A writer under `<stateDirectory>/clips`.
    public convenience init(configuration: DaemonConfiguration.Clips, stateDirectory: String,
                            log: @escaping @Sendable (Logger.Level, String) -> Void) {
        self.init(configuration: configuration, directory: stateDirectory + "/clips", log: log)
    }

    /// A packet ring for camera `id`, sized by the configuration: its source feeds it
    /// (`FileFrameSource(clips:)`, ...) and its pipeline submits clips from it.
    public func recorder(camera id: String) -> ClipRecorder {
        ClipRecorder(camera: id, maxSeconds: configuration.preRollSeconds + configuration.maxSeconds
                         + configuration.postRollSeconds, maxBytes: configuration.bufferBytes,
                     encodeFPS: configuration.encodeFPS, log: log)
    }

    public var totals: Counters { lock.withLock { counters } }

    public func start() {
        lock.withLock {
            precondition(!started, "ClipWriter started twice")
            started = true
        }
        let thread = Thread { [self] in run() }
        thread.name = "m2clipd.clips"
        thread.start()
    }

    /// Queues the clip of an action that ended: `start` and `end` are the capture times of
    /// its first window's first frame and last window's last frame. Returns what the end event
    /// names (nil: dropped, the queue is full). Never blocks on the disk.
    func submit(actionID: String, camera: String, start: Double, end: Double, recorder: ClipRecorder) -> DaemonEvent.Clip? {
        let from = max(start - configuration.preRollSeconds, end - configuration.maxSeconds - configuration.postRollSeconds)
        let to = end + configuration.postRollSeconds
        let path = "\(directory)/\(SnapshotWriter.component(camera))/\(SnapshotWriter.day(end))/"
            + "\(SnapshotWriter.component(actionID)).mp4"
        return lock.withLock {
            guard !stopping else { return nil }
            guard queue.count < capacity else {
                counters.dropped += 1
                log(.warning, "clip \(path): dropped, \(capacity) clips already waiting")
                return nil
            }
            queue.append(Job(actionID: actionID, path: path, from: from, to: to, recorder: recorder))
            lock.broadcast()
            return DaemonEvent.Clip(path: path, startTime: from, endTime: to)
        }
    }

    /// Writes what is queued (each once its camera's packets are in or its source ended),
    /// then stops the thread; waits up to `timeout` seconds.
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
    func waitIdle(timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        return lock.withLock {
            while !(queue.isEmpty && !busy) {
                if !lock.wait(until: deadline) { return queue.isEmpty && !busy }
            }
            return true
        }
    }

    // MARK: - Writer thread

    private func isReady(_ job: Job, now: Double) -> Bool {
        let progress = job.recorder.progress
        return progress.ended || (progress.newest ?? -.infinity) >= job.to || now >= job.to + grace
    }

    private func run() {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        prune()
        var nextRetention = MonotonicClock.now() + retentionInterval
        while true {
            let job: Job? = lock.withLock {
                while true {
                    let now = Date().timeIntervalSince1970
                    // At stop, the sources have ended: every job is ready or soon past its grace.
                    if let i = queue.firstIndex(where: { isReady($0, now: now) }) {
                        busy = true
                        return queue.remove(at: i)
                    }
                    if queue.isEmpty && stopping { return nil }
                    let wait = min(nextRetention - MonotonicClock.now(), queue.isEmpty ? 3600 : 0.1)
                    if wait <= 0 { return nil }
                    _ = lock.wait(until: Date(timeIntervalSinceNow: wait))
                }
            }
            if let job {
                write(job)
                if retained.isOverBudget { prune() }
                lock.withLock {
                    busy = false
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

    private func write(_ job: Job) {
        do {
            guard let stretch = job.recorder.extract(from: job.from, to: job.to) else {
                throw ClipError(message: job.recorder.refused ?? "no video buffered for that time")
            }
            let mp4 = try MP4Muxer.mux(stretch.stream, packets: stretch.packets,
                                       limit: job.recorder.maxBytes + job.recorder.maxBytes / 8 + (1 << 20))
            try fileSystem.writeAtomically(mp4, to: job.path)
            retained.wrote(Int64(mp4.count))
            lock.withLock { counters.written += 1 }
            written(Written(actionID: job.actionID, path: job.path, start: stretch.start, end: stretch.end,
                            bytes: mp4.count, packets: stretch.packets.count))
        } catch {
            lock.withLock { counters.failed += 1 }
            log(.error, "clip \(job.path): \(error)")
        }
    }

    private func prune() {
        let deleted = retained.prune(log: log)
        lock.withLock { counters.deleted += deleted }
    }
}

/// Why a clip could not be made.
struct ClipError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
