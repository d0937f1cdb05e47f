import Foundation
import Logging
import SafeTensors
import Video

/// One action's clip to write.
public struct ClipJob: Sendable {
    var actionID: String
    var path: String
    /// Capture times, seconds since 1970: the action's span with the rolls.
    var from: Double
    var to: Double
    var recorder: ClipRecorder
}

/// Writes action clips (`RetainedFileWriter`: a bounded queue, a thread of its own, retention
/// by days and bytes): MP4s of a camera's packets (`ClipRecorder`: its own H.264, copied, or
/// encoded from its frames) from `pre_roll_s` before an action to `post_roll_s` after it.
///
/// `submit` (at the action's end) fixes the file's path, which the `action.end` event names,
/// and queues the job (queue full: dropped and counted). The writer waits until the camera's
/// packets reach the end of the post-roll, the source ends, or `grace` seconds past it on the
/// wall clock (a stalled camera), then muxes in memory (`MP4Muxer`, at most the camera
/// buffer's size) and writes the file whole or not at all (`AtomicFile`)
/// as `<directory>/<camera>/<YYYY-MM-DD>/<action_id>.mp4` (UTC day of the action's end). A
/// failure (nothing buffered, a full disk) is counted and logged naming the file.
public final class ClipWriter: RetainedFileWriter<ClipJob>, @unchecked Sendable {
    typealias Job = ClipJob

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
    let grace: Double
    private let written: @Sendable (Written) -> Void

    init(configuration: DaemonConfiguration.Clips, directory: String, capacity: Int = 16, grace: Double = 5,
         retentionInterval: Double = 600, calls: FileCalls = .live,
         log: @escaping @Sendable (Logger.Level, String) -> Void,
         written: @escaping @Sendable (Written) -> Void = { _ in }) {
        self.configuration = configuration
        self.grace = grace
        self.written = written
        super.init(threadName: "m2clipd.clips", directory: directory, retentionDays: configuration.retentionDays,
                   maxBytes: configuration.maxBytes, capacity: capacity, retentionInterval: retentionInterval, calls: calls, log: log)
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

    /// Queues the clip of an action that ended: `start` and `end` are the capture times of
    /// its first window's first frame and last window's last frame. Returns what the end event
    /// names (nil: dropped, the queue is full). Never blocks on the disk.
    func submit(actionID: String, camera: String, start: Double, end: Double, recorder: ClipRecorder) -> DaemonEvent.Clip? {
        let from = max(start - configuration.preRollSeconds, end - configuration.maxSeconds - configuration.postRollSeconds)
        let to = end + configuration.postRollSeconds
        let path = filePath(camera: camera, time: end, name: actionID, ext: "mp4")
        let enqueued = lock.withLock { enqueue(Job(actionID: actionID, path: path, from: from, to: to, recorder: recorder)) }
        switch enqueued {
        case .queued: return DaemonEvent.Clip(path: path, startTime: from, endTime: to)
        case .full:
            log(.warning, "clip \(path): dropped, \(capacity) clips already waiting")
            return nil
        case .stopped: return nil
        }
    }

    // MARK: - Writer thread

    override func isReady(_ job: Job, now: Double) -> Bool {
        let progress = job.recorder.progress
        return progress.ended || (progress.newest ?? -.infinity) >= job.to || now >= job.to + grace
    }

    override func write(_ job: Job) -> Int64? {
        do {
            guard let stretch = job.recorder.extract(from: job.from, to: job.to) else {
                throw ClipError(message: job.recorder.refused ?? "no video buffered for that time")
            }
            let mp4 = try MP4Muxer.mux(stretch.stream, packets: stretch.packets,
                                       limit: job.recorder.maxBytes + job.recorder.maxBytes / 8 + (1 << 20))
            try store(mp4, at: job.path)
            written(Written(actionID: job.actionID, path: job.path, start: stretch.start, end: stretch.end,
                            bytes: mp4.count, packets: stretch.packets.count))
            return Int64(mp4.count)
        } catch {
            log(.error, "clip \(job.path): \(error)")
            return nil
        }
    }
}

/// Why a clip could not be made.
struct ClipError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
