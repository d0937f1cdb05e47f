import CoreMetrics
import Foundation
import Prometheus

// CoreMetrics.Counter, .Gauge and .Timer are swift-metrics' own: Prometheus has a Counter and a
// Gauge, Foundation a Timer.

/// m2clipd's metrics in the Prometheus text format, made through swift-metrics with a
/// `PrometheusMetricsFactory` over a registry of this object's own: nothing is bootstrapped
/// process-wide (`MetricsSystem.bootstrap` runs once per process, and tests make many daemons'
/// worth of metrics in one).
///
/// Counters the pipelines count themselves (`CameraMetrics`); snapshots that other parts keep
/// (subscribers, the MQTT outbox) are read when Prometheus scrapes (`exposition`).
public final class DaemonMetrics: @unchecked Sendable {
    /// Every metric name, in one place. Base units (seconds), `_total` on counters.
    public enum Name {
        public static let buildInfo = "m2clipd_build_info"
        public static let cameraUp = "m2clipd_camera_up"
        public static let frames = "m2clipd_frames_total"
        public static let sampledFrames = "m2clipd_sampled_frames_total"
        public static let droppedFrames = "m2clipd_dropped_frames_total"
        public static let windows = "m2clipd_windows_total"
        public static let processedWindows = "m2clipd_processed_windows_total"
        public static let skippedWindows = "m2clipd_skipped_windows_total"
        public static let inferenceDuration = "m2clipd_inference_duration_seconds"
        public static let eventLatency = "m2clipd_event_latency_seconds"
        public static let subscribers = "m2clipd_subscribers"
        public static let mqttConnected = "m2clipd_mqtt_connected"
        public static let mqttQueued = "m2clipd_mqtt_queued_messages"
        public static let mqttSent = "m2clipd_mqtt_sent_messages_total"
        public static let mqttDropped = "m2clipd_mqtt_dropped_messages_total"
        public static let mqttConnectFailures = "m2clipd_mqtt_connect_failures_total"
        public static let historyStored = "m2clipd_history_stored_events_total"
        public static let historyWriteFailures = "m2clipd_history_write_failures_total"
        public static let historyLost = "m2clipd_history_lost_events_total"
        public static let historyPending = "m2clipd_history_pending_events"
        public static let historyWriting = "m2clipd_history_writing"
        public static let snapshotsWritten = "m2clipd_snapshots_written_total"
        public static let snapshotsDropped = "m2clipd_snapshots_dropped_total"
        public static let snapshotsFailed = "m2clipd_snapshots_failed_total"
        public static let snapshotsDeleted = "m2clipd_snapshots_deleted_total"
        public static let clipsWritten = "m2clipd_clips_written_total"
        public static let clipsDropped = "m2clipd_clips_dropped_total"
        public static let clipsFailed = "m2clipd_clips_failed_total"
        public static let clipsDeleted = "m2clipd_clips_deleted_total"
    }

    /// CPU inference of one window takes from ~50 ms (tiny models, many cores) to tens of
    /// seconds (ViT-B/16 at T=16 on a small board).
    static let inferenceBuckets: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30]
    /// Window end → event published: inference plus the wait for the model behind other cameras.
    static let latencyBuckets: [Double] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60]

    public let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    private let lock = NSLock()
    private var sources: [@Sendable (DaemonMetrics) -> Void] = []
    /// MQTT totals already added to the counters (the publisher keeps running totals).
    private var mqttSeen = MQTTPublisher.Counters(connected: false, sent: 0, queued: 0, dropped: 0, unsent: 0)

    public init(version: String) {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            Name.inferenceDuration: Self.inferenceBuckets.map(Duration.seconds),
            Name.eventLatency: Self.latencyBuckets.map(Duration.seconds),
        ]
        self.factory = factory
        CoreMetrics.Gauge(label: Name.buildInfo, dimensions: [("version", version)], factory: factory).record(1)
    }

    /// The metrics of camera `id`. The same id gives the same series, so a camera keeps
    /// counting across a SIGHUP reload.
    public func camera(_ id: String) -> CameraMetrics { CameraMetrics(camera: id, factory: factory) }

    /// Reads `subscribers` at every scrape.
    public func watch(subscribers: @escaping @Sendable () -> Int) {
        let gauge = CoreMetrics.Gauge(label: Name.subscribers, factory: factory)
        addSource { _ in gauge.record(subscribers()) }
    }

    /// Reads the publisher's counters at every scrape.
    public func watch(mqtt: MQTTPublisher) {
        let connected = CoreMetrics.Gauge(label: Name.mqttConnected, factory: factory)
        let queued = CoreMetrics.Gauge(label: Name.mqttQueued, factory: factory)
        let sent = CoreMetrics.Counter(label: Name.mqttSent, factory: factory)
        let dropped = CoreMetrics.Counter(label: Name.mqttDropped, factory: factory)
        let failures = CoreMetrics.Counter(label: Name.mqttConnectFailures, factory: factory)
        addSource { metrics in
            let now = mqtt.counters
            connected.record(now.connected ? 1 : 0)
            queued.record(now.queued)
            let seen = metrics.mqttSeen
            sent.increment(by: max(now.sent - seen.sent, 0))
            dropped.increment(by: max(now.dropped - seen.dropped, 0))
            failures.increment(by: max(now.connectFailures - seen.connectFailures, 0))
            metrics.mqttSeen = now
        }
    }

    /// Reads the event history's counters at every scrape.
    public func watch(history: EventHistory) {
        watchTotal(Name.historyStored) { history.counters.stored }
        watchTotal(Name.historyWriteFailures) { history.counters.writeFailures }
        watchTotal(Name.historyLost) { history.counters.lost }
        let pending = CoreMetrics.Gauge(label: Name.historyPending, factory: factory)
        let writing = CoreMetrics.Gauge(label: Name.historyWriting, factory: factory)
        addSource { _ in
            let now = history.counters
            pending.record(now.pending)
            writing.record(now.writing ? 1 : 0)
        }
    }

    /// Reads the snapshot writer's counters at every scrape.
    public func watch(snapshots: SnapshotWriter) {
        watch(files: { snapshots.totals }, written: Name.snapshotsWritten, dropped: Name.snapshotsDropped,
              failed: Name.snapshotsFailed, deleted: Name.snapshotsDeleted)
    }

    /// Reads the clip writer's counters at every scrape.
    public func watch(clips: ClipWriter) {
        watch(files: { clips.totals }, written: Name.clipsWritten, dropped: Name.clipsDropped,
              failed: Name.clipsFailed, deleted: Name.clipsDeleted)
    }

    private func watch(files: @escaping @Sendable () -> RetainedFileCounters,
                       written: String, dropped: String, failed: String, deleted: String) {
        watchTotal(written) { files().written }
        watchTotal(dropped) { files().dropped }
        watchTotal(failed) { files().failed }
        watchTotal(deleted) { files().deleted }
    }

    /// A counter fed from a running total another part keeps: each scrape adds what it grew by.
    private func watchTotal(_ name: String, _ read: @escaping @Sendable () -> Int) {
        let counter = CoreMetrics.Counter(label: name, factory: factory)
        let seen = RunningTotal()
        addSource { _ in
            let now = read()
            counter.increment(by: max(now - seen.value, 0))
            seen.value = now
        }
    }

    private func addSource(_ read: @escaping @Sendable (DaemonMetrics) -> Void) {
        lock.withLock { sources.append(read) }
    }

    /// The text format (version 0.0.4) of every metric, snapshots read now.
    public func exposition() -> [UInt8] {
        lock.withLock {
            for read in sources { read(self) }
        }
        return registry.emitToBuffer()
    }
}

/// The last value of a running total (read and written under `DaemonMetrics.lock`).
private final class RunningTotal: @unchecked Sendable {
    var value = 0
}

/// One camera's series, labelled `camera`; `CameraPipeline` counts into them next to its own
/// `Counters`.
public struct CameraMetrics: Sendable {
    let frames: CoreMetrics.Counter
    let sampledFrames: CoreMetrics.Counter
    let droppedFrames: CoreMetrics.Counter
    let windows: CoreMetrics.Counter
    let processedWindows: CoreMetrics.Counter
    let skippedWindows: CoreMetrics.Counter
    let inferenceDuration: CoreMetrics.Timer
    let eventLatency: CoreMetrics.Timer
    let up: CoreMetrics.Gauge

    init(camera: String, factory: PrometheusMetricsFactory) {
        let label = [("camera", camera)]
        typealias Name = DaemonMetrics.Name
        frames = CoreMetrics.Counter(label: Name.frames, dimensions: label, factory: factory)
        sampledFrames = CoreMetrics.Counter(label: Name.sampledFrames, dimensions: label, factory: factory)
        droppedFrames = CoreMetrics.Counter(label: Name.droppedFrames, dimensions: label, factory: factory)
        windows = CoreMetrics.Counter(label: Name.windows, dimensions: label, factory: factory)
        processedWindows = CoreMetrics.Counter(label: Name.processedWindows, dimensions: label, factory: factory)
        skippedWindows = CoreMetrics.Counter(label: Name.skippedWindows, dimensions: label, factory: factory)
        inferenceDuration = CoreMetrics.Timer(label: Name.inferenceDuration, dimensions: label, factory: factory)
        eventLatency = CoreMetrics.Timer(label: Name.eventLatency, dimensions: label, factory: factory)
        up = CoreMetrics.Gauge(label: Name.cameraUp, dimensions: label, factory: factory)
        up.record(0)
    }

    /// `camera_up` follows the camera's status events: 1 online, 0 stalled or offline.
    func observe(_ event: DaemonEvent) {
        if case .cameraStatus(let status) = event { up.record(status.status == .online ? 1 : 0) }
    }
}
