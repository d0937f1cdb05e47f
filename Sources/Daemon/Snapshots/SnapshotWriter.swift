import Foundation
import Logging
import SafeTensors
import Video

/// One frame to write as an action's snapshot.
public struct SnapshotJob: Sendable {
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

/// Encodes and writes action snapshots (`RetainedFileWriter`: a bounded queue, a thread of
/// its own, retention by days and bytes).
///
/// `submit` queues a job (the action's new best frame): a newer job for an action already
/// queued replaces it (only the best frame matters), and when the queue is full the job is
/// dropped and counted. Each file is written whole or not at all
/// (`AtomicFile`) as `<directory>/<camera>/<YYYY-MM-DD>/<action_id>.jpg`
/// (UTC date of the frame); a later, better frame of the same action replaces it. A failed
/// write is counted and logged with the file name.
public final class SnapshotWriter: RetainedFileWriter<SnapshotJob>, @unchecked Sendable {
    public typealias Job = SnapshotJob

    public let configuration: DaemonConfiguration.Snapshots
    private let written: @Sendable (Job, DaemonEvent.Snapshot, [UInt8]) -> Void
    /// On the writer's thread only.
    private lazy var encoder = JPEGEncoder(quality: configuration.quality, maxWidth: configuration.maxWidth)

    // Guarded by `lock`:
    private var latest: [String: DaemonEvent.Snapshot] = [:]
    /// Actions whose end was announced while a job of theirs was queued or being written.
    private var ended: Set<String> = []

    /// - Parameters:
    ///   - capacity: jobs waiting, at most.
    ///   - written: after each file is on disk, on the writer's thread (MQTT publishes it).
    init(configuration: DaemonConfiguration.Snapshots, directory: String, capacity: Int = 8,
         retentionInterval: Double = 600, calls: FileCalls = .live,
         log: @escaping @Sendable (Logger.Level, String) -> Void,
         written: @escaping @Sendable (Job, DaemonEvent.Snapshot, [UInt8]) -> Void = { _, _, _ in }) {
        self.configuration = configuration
        self.written = written
        super.init(threadName: "m2clipd.snapshots", directory: directory, retentionDays: configuration.retentionDays,
                   maxBytes: configuration.maxBytes, capacity: capacity, retentionInterval: retentionInterval, calls: calls, log: log)
    }

    /// The writer for `state_dir`'s snapshots.
    public convenience init(configuration: DaemonConfiguration.Snapshots, stateDirectory: String,
                            log: @escaping @Sendable (Logger.Level, String) -> Void,
                            written: @escaping @Sendable (Job, DaemonEvent.Snapshot, [UInt8]) -> Void = { _, _, _ in }) {
        self.init(configuration: configuration, directory: stateDirectory + "/snapshots", log: log, written: written)
    }

    /// Queues `job`; false when it was dropped (queue full). Never blocks on the disk.
    @discardableResult
    public func submit(_ job: Job) -> Bool {
        lock.withLock { enqueue(job, replacing: { $0.actionID == job.actionID }) == .queued }
    }

    /// The snapshot on disk for `actionID`, for its next event. `ending`: the action's end
    /// event; the writer then forgets it (a job still pending writes its file and calls
    /// `written`, but no event names that version).
    public func snapshot(for actionID: String, ending: Bool = false) -> DaemonEvent.Snapshot? {
        lock.withLock {
            guard ending else { return latest[actionID] }
            if writing?.actionID == actionID || queue.contains(where: { $0.actionID == actionID }) { ended.insert(actionID) }
            return latest.removeValue(forKey: actionID)
        }
    }

    /// `<directory>/<camera>/<YYYY-MM-DD>/<action_id>.jpg`, names made safe as one path
    /// component each.
    public func path(for job: Job) -> String {
        filePath(camera: job.camera, time: job.frameTime, name: job.actionID, ext: "jpg")
    }

    // MARK: - Writer thread

    override func write(_ job: Job) -> Int64? {
        let path = path(for: job)
        do {
            let jpeg = try encoder.encode(job.frame)
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            let previous = (attributes?[.size] as? NSNumber)?.int64Value ?? 0
            try store(jpeg, at: path)
            let snapshot = DaemonEvent.Snapshot(path: path, frameTime: job.frameTime, score: job.score)
            lock.withLock {
                if !ended.contains(job.actionID) { latest[job.actionID] = snapshot }
            }
            written(job, snapshot, jpeg)
            return Int64(jpeg.count) - previous
        } catch {
            log(.error, "snapshot \(path): \(error)")
            return nil
        }
    }

    override func didFinish(_ job: Job) {
        ended.remove(job.actionID)
    }
}
