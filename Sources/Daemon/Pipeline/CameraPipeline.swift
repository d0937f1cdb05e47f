import Foundation
import M2Model
import Video

/// One camera: source → `RollingWindow` → inference → `ActionTracker` → `emit`.
///
/// Threads: the source's thread samples and preprocesses frames and hands finished windows to
/// a single slot; the pipeline's inference thread takes them from it. Capture never waits for
/// the model: a window arriving while the slot is still full replaces the one waiting there
/// (latest wins) and counts as skipped.
///
/// Events, in order: `camera.status online` when the source reports it; actions as windows
/// are scored. When the source goes offline (device unplugged, stream lost) the window waiting
/// is still scored, open actions end and `camera.status offline` follows with the reason; the
/// source reopens by itself and reports `online` again. An online source that delivers nothing
/// for `stall_timeout_s` gives `camera.status stalled` (open actions end) and `online` once
/// frames return. When the source ends (end of file, failure, `stop`) the waiting window is
/// scored, open actions end, and `camera.status offline` comes last, with the reason. A source
/// that fails to start gives only the offline status.
///
/// Snapshots (with a `SnapshotWriter`): when an action's best window changes, the window's
/// last frame goes to the writer's queue; action events carry the snapshot the writer has on
/// disk by then (`DaemonEvent.Action.snapshot`).
///
/// Clips (with a `ClipWriter` and the `ClipRecorder` the source feeds): each action's end
/// queues its clip, from the start of its `action.start` window to the end of its last window,
/// with the rolls; the end event names the file (`DaemonEvent.Action.clip`).
public final class CameraPipeline: @unchecked Sendable {
    /// Totals since `start`.
    public struct Counters: Sendable, Equatable {
        public var framesIn = 0
        public var sampled = 0
        public var windows = 0
        public var processedWindows = 0
        public var skippedWindows = 0
        /// Frames the source lost (gaps in its sequence numbers) or that did not decode.
        public var droppedFrames = 0
    }

    public let camera: DaemonConfiguration.Camera
    public let source: CameraSource
    public let engine: InferenceEngine
    public let scorer: WindowScorer
    /// T.
    public let frames: Int
    private let emit: @Sendable (DaemonEvent) -> Void
    private let metrics: CameraMetrics?
    /// nil: no snapshots.
    private let snapshots: SnapshotWriter?
    /// nil: no clips.
    private let clips: (writer: ClipWriter, recorder: ClipRecorder)?
    /// Start times (window start, seconds since 1970) of the actions in progress; on the
    /// inference thread only.
    private var actionStarts: [String: Double] = [:]

    private let state = NSCondition()
    private var counters = Counters()
    private var pending: RollingWindow.Window?
    /// Connection changes not yet announced, each with the window that was waiting before it.
    private var statusChanges: [(before: RollingWindow.Window?, status: DaemonEvent.CameraStatus)] = []
    private var online = false
    private var stalled = false
    /// Monotonic time of the last frame (or of going online).
    private var lastFrameAt = 0.0
    private var sourceEnd: CameraSourceEnd?
    private var stopReason: String?
    private var started = false
    private var finished = false
    /// Recent inference times in ms, oldest first.
    private var latencies: [Double] = []
    private static let latencyHistory = 100
    private var lastStats: (time: Double, counters: Counters)?
    /// Touched only on the source's thread.
    private var rolling: RollingWindow?
    private var lastSequence = -1
    private var tracker: ActionTracker

    /// - Parameters:
    ///   - camera: its validated configuration (`frames` nil: the model's T).
    ///   - epoch: this daemon run's id, for action ids.
    ///   - top: labels listed in each action event.
    ///   - metrics: counted into beside `totals`, when the daemon serves metrics.
    ///   - snapshots: where action snapshots go (nil: none).
    ///   - clips: where action clips go, and the packet ring `source` feeds (nil: none).
    ///   - emit: receives every event, from the pipeline's threads; must not block for long.
    public init(camera: DaemonConfiguration.Camera, source: CameraSource, engine: InferenceEngine,
                epoch: String, top: Int = 5, metrics: CameraMetrics? = nil, snapshots: SnapshotWriter? = nil,
                clips: (writer: ClipWriter, recorder: ClipRecorder)? = nil,
                emit: @escaping @Sendable (DaemonEvent) -> Void) throws {
        self.camera = camera
        self.source = source
        self.engine = engine
        scorer = try WindowScorer(camera: camera, engine: engine)
        frames = camera.frames ?? engine.model.configuration.frames
        tracker = ActionTracker(camera: camera.id, thresholds: camera.thresholds, top: top, epoch: epoch)
        self.metrics = metrics
        self.snapshots = snapshots
        self.clips = clips
        if let metrics {
            self.emit = { event in
                metrics.observe(event)
                emit(event)
            }
        } else {
            self.emit = emit
        }
    }

    /// Starts the source and the inference thread. Never throws: a source that cannot start
    /// is reported as `camera.status offline` with its error.
    public func start() {
        state.withLock {
            precondition(!started, "camera \(camera.id): pipeline started twice")
            started = true
            lastStats = (MonotonicClock.now(), Counters())
        }
        do {
            try source.start(onFrame: { [self] in capture($0) }, onStatus: { [self] in statusChanged($0) },
                             onEnd: { [self] end in
                state.withLock {
                    sourceEnd = end
                    state.broadcast()
                }
            })
        } catch {
            emit(.cameraStatus(.init(camera: camera.id, status: .offline, reason: "\(error)")))
            state.withLock {
                finished = true
                state.broadcast()
            }
            return
        }
        let thread = Thread { [self] in inferenceLoop() }
        thread.name = "m2clip.inference.\(camera.id)"
        thread.start()
    }

    /// Stops the source; the pipeline then finishes as described above, with `reason` in the
    /// offline status. Returns at once: `wait` for the end.
    public func stop(reason: String = "shutdown") {
        state.withLock { if stopReason == nil { stopReason = reason } }
        source.stop()
    }

    /// Waits until the offline status has been emitted; false on timeout.
    @discardableResult
    public func wait(timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        state.lock()
        defer { state.unlock() }
        while !finished {
            if !state.wait(until: deadline) { return finished }
        }
        return true
    }

    public var totals: Counters { state.withLock { counters } }

    /// Rates over the time since the previous call (or since `start`), and inference latency
    /// percentiles over the last 100 windows. `fps_processed` counts sampled frames that
    /// reached the model as new content: processed windows × stride per second (equal to
    /// `fps_sampled` when no window is skipped).
    public func stats() -> DaemonEvent.Stats.Camera {
        state.withLock {
            let now = MonotonicClock.now()
            let previous = lastStats ?? (now, Counters())
            lastStats = (now, counters)
            let seconds = max(now - previous.time, 1e-9)
            func rate(_ key: KeyPath<Counters, Int>) -> Double {
                Double(counters[keyPath: key] - previous.counters[keyPath: key]) / seconds
            }
            let sorted = latencies.sorted()
            return .init(camera: camera.id, fpsIn: rate(\.framesIn), fpsSampled: rate(\.sampled),
                         fpsProcessed: rate(\.processedWindows) * Double(camera.stride),
                         skippedWindows: counters.skippedWindows, droppedFrames: counters.droppedFrames,
                         inferenceP50Ms: Self.percentile(sorted, 0.5), inferenceP90Ms: Self.percentile(sorted, 0.9))
        }
    }

    /// Nearest-rank percentile of sorted values; 0 for none.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    /// On the source's thread. Windows never span a disconnection: the ring starts over.
    private func statusChanged(_ change: CameraSourceStatus) {
        rolling = nil
        lastSequence = -1
        let status: DaemonEvent.CameraStatus
        switch change {
        case .online: status = .init(camera: camera.id, status: .online, reason: nil)
        case .offline(let reason): status = .init(camera: camera.id, status: .offline, reason: reason)
        }
        state.withLock {
            statusChanges.append((pending, status))
            pending = nil
            online = change == .online
            stalled = false
            lastFrameAt = MonotonicClock.now()
            state.broadcast()
        }
    }

    /// On the source's thread.
    private func capture(_ frame: CapturedFrame) {
        let resumed = state.withLock {
            lastFrameAt = MonotonicClock.now()
            guard stalled else { return false }
            stalled = false
            statusChanges.append((pending, .init(camera: camera.id, status: .online, reason: nil)))
            pending = nil
            state.broadcast()
            return true
        }
        if resumed {
            rolling = nil
            lastSequence = -1
        }
        if rolling == nil {
            rolling = RollingWindow(sourceFPS: source.fps, sampleFPS: camera.sampleFPS, frames: frames,
                                    stride: camera.stride,
                                    preprocessor: CLIPPreprocessor(size: engine.model.vision.configuration.imageSize))
        }
        let gap = lastSequence >= 0 ? max(frame.sequence - lastSequence - 1, 0) : 0
        lastSequence = frame.sequence
        let before = (rolling!.sampled, rolling!.undecodable)
        let window = rolling!.add(frame)
        let sampled = rolling!.sampled - before.0
        let lost = rolling!.undecodable - before.1
        let skipped = state.withLock {
            counters.framesIn += 1
            counters.droppedFrames += gap + lost
            counters.sampled += sampled
            guard let window else { return false }
            counters.windows += 1
            let skipped = pending != nil
            if skipped { counters.skippedWindows += 1 }
            pending = window
            state.broadcast()
            return skipped
        }
        if let metrics {
            metrics.frames.increment()
            metrics.droppedFrames.increment(by: gap + lost)
            metrics.sampledFrames.increment(by: sampled)
            if window != nil { metrics.windows.increment() }
            if skipped { metrics.skippedWindows.increment() }
        }
    }

    private enum Work {
        case window(RollingWindow.Window)
        case status(before: RollingWindow.Window?, DaemonEvent.CameraStatus)
        case stalled(seconds: Double)
        case end(CameraSourceEnd?)
    }

    /// The next thing to do, in the order things happened; waits for it.
    private func nextWork() -> Work {
        state.lock()
        defer { state.unlock() }
        while true {
            if !statusChanges.isEmpty {
                let change = statusChanges.removeFirst()
                return .status(before: change.before, change.status)
            }
            if let window = pending {
                pending = nil
                return .window(window)
            }
            if sourceEnd != nil { return .end(sourceEnd) }
            guard online, !stalled else {
                state.wait()
                continue
            }
            let now = MonotonicClock.now()
            let deadline = lastFrameAt + camera.stallTimeoutSeconds
            if now >= deadline {
                stalled = true
                return .stalled(seconds: now - lastFrameAt)
            }
            _ = state.wait(until: Date(timeIntervalSinceNow: deadline - now))
        }
    }

    private func inferenceLoop() {
        while true {
            switch nextWork() {
            case .window(let window):
                process(window)
            case .status(let before, let status):
                if let before { process(before) }
                if status.status != .online { finishActions() }
                emit(.cameraStatus(status))
            case .stalled(let seconds):
                finishActions()
                emit(.cameraStatus(.init(camera: camera.id, status: .stalled,
                                         reason: String(format: "no frame for %.1f s", seconds))))
            case .end(let end):
                let reason = state.withLock { stopReason } ?? end?.reason ?? "stopped"
                finishActions()
                emit(.cameraStatus(.init(camera: camera.id, status: .offline, reason: reason)))
                state.withLock {
                    finished = true
                    state.broadcast()
                }
                return
            }
        }
    }

    private func process(_ window: RollingWindow.Window) {
        let start = MonotonicClock.now()
        let output = engine.run(pixels: window.pixels, frames: window.frames)
        let scores = scorer.scores(output)
        let seconds = MonotonicClock.now() - start
        let latency = seconds * 1000
        state.withLock {
            counters.processedWindows += 1
            latencies.append(latency)
            if latencies.count > Self.latencyHistory { latencies.removeFirst(latencies.count - Self.latencyHistory) }
        }
        let observation = ActionTracker.Observation(
            scores: zip(scorer.labels, scores).map { DaemonEvent.Score(label: $0, score: $1) },
            startWallClock: window.startWallClock, endWallClock: window.endWallClock,
            startMonotonic: window.startMonotonic, endMonotonic: window.endMonotonic, latencyMs: latency,
            frame: snapshots == nil ? nil : window.lastFrame)
        let events = tracker.observe(observation)
        if let snapshots {
            for best in tracker.takeBests() {
                snapshots.submit(.init(actionID: best.actionID, camera: camera.id, label: best.label, score: best.score,
                                       frameTime: best.frameTime, frame: best.frame))
            }
        }
        events.forEach(emitAction)
        if let metrics {
            metrics.processedWindows.increment()
            metrics.inferenceDuration.recordSeconds(seconds)
            // The window's last frame was captured at endMonotonic (CLOCK_MONOTONIC, as `now`).
            let published = MonotonicClock.now() - window.endMonotonic
            for _ in events { metrics.eventLatency.recordSeconds(published) }
        }
    }

    /// Ends the open actions (camera offline, stalled, stopping).
    private func finishActions() {
        tracker.finish().forEach(emitAction)
    }

    /// Emits an action event with the snapshot on disk for it, if any, and on its end the
    /// clip queued for it.
    private func emitAction(_ event: DaemonEvent) {
        switch event {
        case .actionStart(var a):
            a.snapshot = snapshots?.snapshot(for: a.actionID)
            if clips != nil { actionStarts[a.actionID] = a.windowStart }
            emit(.actionStart(a))
        case .actionUpdate(var a):
            a.snapshot = snapshots?.snapshot(for: a.actionID)
            emit(.actionUpdate(a))
        case .actionEnd(var a):
            a.snapshot = snapshots?.snapshot(for: a.actionID, ending: true)
            if let clips {
                let start = actionStarts.removeValue(forKey: a.actionID) ?? a.windowStart
                a.clip = clips.writer.submit(actionID: a.actionID, camera: camera.id, start: start, end: a.windowEnd,
                                             recorder: clips.recorder)
            }
            emit(.actionEnd(a))
        default:
            emit(event)
        }
    }
}
