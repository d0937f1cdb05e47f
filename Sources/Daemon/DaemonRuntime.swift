import Dispatch
import Foundation
import Logging
import M2Model
import Ops
import Video
#if canImport(Glibc)
import Glibc
#endif

/// m2clipd: the model, one pipeline per camera, the event bus and the socket server, under
/// systemd's notify protocol. `run()` blocks until SIGTERM/SIGINT; SIGHUP reloads the
/// configuration's cameras without dropping subscribers.
public final class DaemonRuntime: @unchecked Sendable {
    public static let version = "0.1.0"

    let configurationPath: String
    private(set) var configuration: DaemonConfiguration
    let notifier = SystemdNotifier()
    let engine: InferenceEngine
    let bus: EventBus
    let server: SocketServer
    /// nil without an `mqtt:` section.
    let mqtt: MQTTPublisher?
    /// nil without a `metrics:` section.
    let metrics: DaemonMetrics?
    private let metricsServer: MetricsServer?
    /// nil without an enabled `snapshots:` section.
    let snapshots: SnapshotWriter?
    /// nil without an enabled `clips:` section.
    let clips: ClipWriter?
    /// nil when history is off or there is no state directory.
    let history: EventHistory?
    private var pipelines: [CameraPipeline] = []
    private let lock = NSLock()
    private let stopped = DispatchSemaphore(value: 0)
    private var timers: [DispatchSourceTimer] = []
    private var signalSources: [DispatchSourceSignal] = []
    private var lastProgress: [Int] = []
    private let queue = DispatchQueue(label: "m2clipd.control")
    let logger: Logger

    /// m2clipd's logger: `DaemonLogHandler` at `level`, to `LogDestination.automatic()`.
    public static func defaultLogger(level: Logger.Level) -> Logger {
        let destination = LogDestination.automatic()
        return Logger(label: "m2clipd") { _ in DaemonLogHandler(destination: destination, level: level) }
    }

    /// The configuration at `path`, refused when it has a network stream or a metrics port and
    /// this process cannot reach the network (the sandbox of the shipped units).
    public static func loadRunnable(path: String) throws -> DaemonConfiguration {
        let configuration = try DaemonConfiguration.load(path: path)
        for (index, camera) in configuration.cameras.enumerated() {
            guard case .url(let url) = camera.source, let host = try? StreamURL(url).host,
                  let problem = NetworkAccess.problem(reaching: host) else { continue }
            throw ConfigurationError(file: path, field: "cameras[\(index)].source.url",
                                     "a network stream, but \(problem); under systemd, install "
                                         + "systemd/m2clipd-network.conf as a drop-in")
        }
        if let mqtt = configuration.mqtt, let problem = NetworkAccess.problem(reaching: mqtt.host) {
            throw ConfigurationError(file: path, field: "mqtt.host",
                                     "an MQTT broker, but \(problem); under systemd, install "
                                         + "systemd/m2clipd-network.conf as a drop-in")
        }
        if configuration.metrics != nil, let problem = NetworkAccess.problemServing() {
            throw ConfigurationError(file: path, field: "metrics.listen",
                                     "a metrics port, but \(problem); under systemd, install "
                                         + "systemd/m2clipd-metrics.conf as a drop-in")
        }
        return configuration
    }

    /// Loads the model and opens the socket (from systemd when socket-activated).
    /// - Parameter logger: where the daemon's log goes (default: `DaemonLogHandler` at info, to
    ///   the journal when stderr is the service's journal stream, else plain stderr lines).
    public init(configurationPath: String, logger: Logger? = nil) throws {
        self.configurationPath = configurationPath
        let logger = logger ?? Self.defaultLogger(level: .info)
        self.logger = logger
        let configuration = try Self.loadRunnable(path: configurationPath)
        self.configuration = configuration
        try configuration.createStateDirectory()
        let context = try ComputeContext(threads: configuration.threads)
        let model = try ModelFile.load(path: configuration.model, context: context)
        engine = InferenceEngine(model: model, context: context)
        history = configuration.historyDatabase.map { path in
            EventHistory(path: path, retention: configuration.history.retention,
                         log: { logger.log(level: $0, "\($1)") })
        }
        bus = EventBus(epoch: UUID().uuidString.lowercased(), ringCapacity: 4096, history: history)
        if let settings = configuration.mqtt {
            let publisher = MQTTPublisher(
                configuration: settings, cameras: [], version: Self.version,
                makeTransport: { try MosquittoClient(configuration: settings, will: MQTTPublisher.will(settings)) },
                log: { logger.log(level: $0, "\($1)") })
            bus.tap { publisher.offer($0) }
            mqtt = publisher
        } else {
            mqtt = nil
        }
        if let settings = configuration.metrics {
            let metrics = DaemonMetrics(version: Self.version)
            metrics.watch(subscribers: { [bus] in bus.subscriberCount })
            if let mqtt { metrics.watch(mqtt: mqtt) }
            metricsServer = try MetricsServer(configuration: settings, file: configurationPath, metrics: metrics)
            self.metrics = metrics
        } else {
            metrics = nil
            metricsServer = nil
        }
        if let settings = configuration.snapshots, settings.enabled, let stateDirectory = configuration.stateDirectory {
            snapshots = SnapshotWriter(configuration: settings, stateDirectory: stateDirectory,
                                       log: { logger.log(level: $0, "\($1)") },
                                       written: { [mqtt] job, _, jpeg in
                                           mqtt?.offerSnapshot(camera: job.camera, label: job.label, jpeg: jpeg)
                                       })
        } else {
            snapshots = nil
        }
        if let settings = configuration.clips, settings.enabled, let stateDirectory = configuration.stateDirectory {
            clips = ClipWriter(configuration: settings, stateDirectory: stateDirectory,
                               log: { logger.log(level: $0, "\($1)") })
        } else {
            clips = nil
        }
        if let metrics {
            if let history { metrics.watch(history: history) }
            if let snapshots { metrics.watch(snapshots: snapshots) }
            if let clips { metrics.watch(clips: clips) }
        }
        let hello = DaemonEvent.Hello(daemon: "m2clipd", version: Self.version, model: configuration.model,
                                      cameras: configuration.cameras.map(\.id), labels: model.labels.count)
        if let fd = SocketActivation.listeningFD() {
            server = try SocketServer(listeningFD: fd, path: configuration.socket.path, bus: bus, hello: hello)
        } else {
            server = try SocketServer(path: configuration.socket.path, bus: bus, hello: hello,
                                      options: .init(mode: mode_t(configuration.socket.permissions)))
        }
    }

    /// Runs until SIGTERM or SIGINT; returns after a graceful drain.
    public func run() throws {
        for sig in [SIGTERM, SIGINT, SIGHUP] { signal(sig, SIG_IGN) }
        // A file size limit (LimitFSIZE=, prlimit) must fail the write with EFBIG, which the
        // snapshot writer counts, not kill the daemon with SIGXFSZ.
        signal(SIGXFSZ, SIG_IGN)
        snapshots?.start()
        clips?.start()
        try startPipelines()
        if let mqtt {
            mqtt.update(cameras: watchedCameras)
            mqtt.start()
        }
        notifier.ready(status: statusLine)
        log("ready: \(statusLine), events on \(configuration.socket.path)"
                + (metricsServer.map { ", metrics on http://\($0.listen)/metrics" } ?? ""))
        addSignal(SIGTERM) { [weak self] in self?.requestStop("SIGTERM") }
        addSignal(SIGINT) { [weak self] in self?.requestStop("SIGINT") }
        addSignal(SIGHUP) { [weak self] in self?.reload() }
        addTimer(every: configuration.statsIntervalSeconds) { [weak self] in self?.publishStats() }
        if let history {
            addTimer(every: history.retryInterval) { [weak self] in self?.bus.retryHistory() }
            addTimer(every: 3600) { history.applyRetention() }
        }
        if let interval = notifier.watchdogInterval {
            addTimer(every: interval) { [weak self] in self?.watchdogTick() }
        }
        stopped.wait()
        shutdown()
    }

    var statusLine: String {
        "\(configuration.cameras.count) camera(s), \(engine.model.labels.count) labels, epoch \(bus.epoch.prefix(8))"
    }

    private func startPipelines() throws {
        let built = try configuration.cameras.map { camera -> CameraPipeline in
            let source: CameraSource
            let recorder = clips.flatMap { $0.configuration.covers(camera.id) ? $0.recorder(camera: camera.id) : nil }
            switch camera.source {
            case .file(let path, let loop):
                source = FileFrameSource(path: path, loop: loop, clips: recorder)
            case .v4l2(let device, let width, let height, let fps, let format):
                source = V4L2CameraSource(device: device, request: .init(
                    width: width, height: height, fps: fps, format: format.flatMap(V4L2PixelFormat.init(rawValue:))),
                    clips: recorder)
            case .url(let url):
                source = StreamFrameSource(url: url, clips: recorder)
            }
            let bus = self.bus
            return try CameraPipeline(camera: camera, source: source, engine: engine, epoch: bus.epoch,
                                      metrics: metrics?.camera(camera.id), snapshots: snapshots,
                                      clips: clips.flatMap { writer in recorder.map { (writer, $0) } },
                                      emit: { bus.publish($0) })
        }
        lock.withLock {
            pipelines = built
            lastProgress = built.map { _ in -1 }
        }
        built.forEach { $0.start() }
    }

    private func stopPipelines(reason: String) {
        let running = lock.withLock { pipelines }
        running.forEach { $0.stop(reason: reason) }
        let deadline = Date().addingTimeInterval(configuration.shutdownTimeoutSeconds)
        for pipeline in running where !pipeline.wait(timeout: max(deadline.timeIntervalSinceNow, 0)) {
            logger.warning("camera \(pipeline.camera.id): did not stop within \(configuration.shutdownTimeoutSeconds) s",
                           metadata: ["camera": "\(pipeline.camera.id)"])
        }
    }

    private func requestStop(_ why: String) {
        log("\(why): stopping")
        notifier.stopping()
        stopped.signal()
    }

    private func shutdown() {
        timers.forEach { $0.cancel() }
        stopPipelines(reason: "shutdown")
        if let snapshots {
            snapshots.stop(timeout: min(configuration.shutdownTimeoutSeconds, 3))
            let c = snapshots.totals
            log("snapshots: \(c.written) written, \(c.failed) failed, \(c.dropped) dropped, \(c.deleted) deleted by retention")
        }
        if let clips {
            // The sources have ended, so every queued clip is ready to write.
            clips.stop(timeout: min(configuration.shutdownTimeoutSeconds, 5))
            let c = clips.totals
            log("clips: \(c.written) written, \(c.failed) failed, \(c.dropped) dropped, \(c.deleted) deleted by retention")
        }
        publishStats()
        if let mqtt {
            let c = mqtt.stop(timeout: min(configuration.shutdownTimeoutSeconds, 3))
            log("mqtt: \(c.sent) message(s) sent, \(c.dropped) dropped, \(c.unsent) unsent at shutdown")
        }
        bus.finishAll()
        server.stop()
        metricsServer?.stop()
        history?.close()
        log("stopped")
    }

    /// SIGHUP: re-read the configuration; on success the cameras restart with it (their open
    /// actions end), subscribers stay connected. An invalid file leaves everything running.
    private func reload() {
        do {
            let next = try Self.loadRunnable(path: configurationPath)
            guard next.model == configuration.model, next.socket == configuration.socket,
                  next.mqtt == configuration.mqtt, next.metrics == configuration.metrics,
                  next.snapshots == configuration.snapshots, next.clips == configuration.clips,
                  next.stateDirectory == configuration.stateDirectory,
                  next.history == configuration.history else {
                logger.warning("reload: model, socket, mqtt, metrics, snapshots, clips, history or state_dir changed; restart the service to apply that (cameras kept)")
                return
            }
            notifier.notify("RELOADING=1")
            stopPipelines(reason: "reload")
            configuration = next
            try startPipelines()
            mqtt?.update(cameras: watchedCameras)
            notifier.notify("READY=1\nSTATUS=\(statusLine)")
            log("reloaded: \(statusLine)")
        } catch {
            logger.error("reload: \(error)")
            notifier.notify("READY=1\nSTATUS=reload failed: \(error)")
        }
    }

    private func publishStats() {
        let cameras = lock.withLock { pipelines }.map { $0.stats() }
        bus.publish(.stats(.init(cameras: cameras, mqtt: mqtt?.counters, snapshots: snapshots?.totals,
                                 clips: clips?.totals, history: history?.counters)))
    }

    /// The running cameras and the labels each scores, for the MQTT publisher.
    private var watchedCameras: [MQTTPublisher.Camera] {
        lock.withLock { pipelines }.map { MQTTPublisher.Camera(id: $0.camera.id, labels: $0.scorer.labels) }
    }

    /// WATCHDOG=1 only while frames and windows move (or no camera is left running).
    private func watchdogTick() {
        let current = lock.withLock { pipelines }
        let progress = current.map { $0.totals.framesIn + $0.totals.processedWindows }
        let moved = zip(progress, lastProgress).contains { $0 != $1 }
        let anyRunning = current.contains { !$0.wait(timeout: 0) }
        lock.withLock { lastProgress = progress }
        if moved || !anyRunning { notifier.watchdog() }
    }

    private func addSignal(_ sig: Int32, _ handler: @escaping @Sendable () -> Void) {
        let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
        source.setEventHandler(handler: handler)
        source.resume()
        signalSources.append(source)
    }

    private func addTimer(every seconds: Double, _ handler: @escaping @Sendable () -> Void) {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + seconds, repeating: seconds)
        timer.setEventHandler(handler: handler)
        timer.resume()
        timers.append(timer)
    }

    func log(_ message: String) {
        logger.info("\(message)")
    }
}
