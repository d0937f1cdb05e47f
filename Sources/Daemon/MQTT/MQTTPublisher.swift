import Foundation
import Logging

/// Publishes the daemon's events to an MQTT broker (topics: `MQTTTopics`) and, when asked,
/// announces the cameras to Home Assistant (`HomeAssistantDiscovery`).
///
/// Never in the way of capture or inference: `offer` only turns an event into messages and
/// queues them in a bounded `MQTTOutbox` (full: the oldest QoS 0 message goes first, every drop
/// counted). One network thread connects, reconnects with exponential backoff, sends the
/// retained state again after every connect (availability, camera status, label ON/OFF),
/// then drains the outbox with at most `window` messages in flight.
public final class MQTTPublisher: @unchecked Sendable {
    /// A camera and the labels its pipeline scores.
    public struct Camera: Sendable, Equatable {
        public var id: String
        public var labels: [String]
        public init(id: String, labels: [String]) { self.id = id; self.labels = labels }
    }

    /// What was published and what was not, for the stats event and the shutdown log.
    public struct Counters: Codable, Sendable, Equatable {
        public var connected: Bool
        /// Messages the broker took (QoS 0: written; QoS 1/2: acknowledged).
        public var sent: Int
        /// Waiting in the outbox now.
        public var queued: Int
        /// Dropped from the full outbox, or in flight when a connection broke.
        public var dropped: Int
        /// Still queued or in flight when the daemon stopped (only after `stop`).
        public var unsent: Int
        /// Connection attempts that failed or connections that broke (for metrics; not in
        /// the stats event).
        public var connectFailures = 0

        enum CodingKeys: String, CodingKey { case connected, sent, queued, dropped, unsent }
    }

    public let configuration: DaemonConfiguration.MQTT
    public let topics: MQTTTopics
    let discovery: HomeAssistantDiscovery?
    private let makeTransport: () throws -> MQTTTransport
    private let log: @Sendable (Logger.Level, String) -> Void
    private let initialBackoff: Double
    private let maxBackoff: Double
    private let window: Int

    private let lock = NSCondition()
    // Guarded by `lock`:
    private var outbox: MQTTOutbox
    private var cameras: [Camera]
    private var openActions: [String: MQTTEventSnapshot] = [:]
    private var activeLabels: [String: Set<String>] = [:]   // camera → labels ON
    private var cameraStatus: [String: String] = [:]
    private var removedComponents: [String: String] = [:]     // component id → platform
    private var discoveryDue = false
    private var connected = false
    private var sent = 0
    private var lostInFlight = 0
    private var connectFailures = 0
    private var unsent = 0
    private var stopping = false
    private var finished = false
    private var thread: Thread?

    /// - Parameters:
    ///   - makeTransport: builds the client once, on the network thread (its errors are logged
    ///     and retried like a broker that is down).
    ///   - backoff: seconds before the first reconnect, doubling up to `max`.
    ///   - window: messages handed to the transport and not yet delivered, at most.
    public init(configuration: DaemonConfiguration.MQTT, cameras: [Camera], version: String,
                backoff: (initial: Double, max: Double) = (0.5, 30), window: Int = 64,
                makeTransport: @escaping () throws -> MQTTTransport, log: @escaping @Sendable (Logger.Level, String) -> Void) {
        self.configuration = configuration
        topics = MQTTTopics(prefix: configuration.topicPrefix)
        discovery = configuration.homeAssistant
            ? HomeAssistantDiscovery(configuration: configuration, version: version) : nil
        self.cameras = cameras
        self.makeTransport = makeTransport
        self.log = log
        initialBackoff = backoff.initial
        maxBackoff = backoff.max
        self.window = window
        outbox = MQTTOutbox(capacity: configuration.buffer)
    }

    /// The retained last will: `<prefix>/available` = `offline`.
    public static func will(_ configuration: DaemonConfiguration.MQTT) -> MQTTMessage {
        MQTTMessage(topic: MQTTTopics(prefix: configuration.topicPrefix).available, text: "offline", qos: 1, retain: true)
    }

    public var counters: Counters {
        lock.withLock {
            Counters(connected: connected, sent: sent, queued: outbox.count, dropped: outbox.dropped + lostInFlight,
                     unsent: unsent, connectFailures: connectFailures)
        }
    }

    /// Starts the network thread.
    public func start() {
        let thread = Thread { [self] in run() }
        thread.name = "m2clipd.mqtt"
        lock.withLock { self.thread = thread }
        thread.start()
    }

    // MARK: - Events in

    /// Queues the messages for `event`. Never blocks on the network.
    public func offer(_ event: DaemonEvent) {
        lock.withLock {
            guard !stopping else { return }
            for message in messages(for: event) { outbox.append(message) }
        }
    }

    /// Queues an action's snapshot for `<prefix>/<camera>/<label>/snapshot`, retained (the
    /// latest per label stays on the broker, as Frigate's do) at QoS 0, so a full outbox drops
    /// snapshots before events. A snapshot still queued for the same topic is replaced, so
    /// while the broker is away at most one JPEG per camera and label waits.
    public func offerSnapshot(camera: String, label: String, jpeg: [UInt8]) {
        lock.withLock {
            guard !stopping else { return }
            let topic = topics.snapshot(camera, label)
            outbox.removeQueued(topic: topic)
            outbox.append(MQTTMessage(topic: topic, payload: jpeg, qos: 0, retain: true))
        }
    }

    /// The messages an event becomes; updates the state sent again after a reconnect.
    /// Called under `lock`.
    private func messages(for event: DaemonEvent) -> [MQTTMessage] {
        let qos = configuration.qos
        func eventMessage(_ type: String, _ before: MQTTEventSnapshot, _ after: MQTTEventSnapshot, qos: Int) -> MQTTMessage {
            MQTTMessage(topic: topics.events, payload: MQTTJSON.encode(MQTTEventMessage(type: type, before: before, after: after)),
                        qos: qos, retain: false)
        }
        switch event {
        case .actionStart(let a):
            let snapshot = MQTTEventSnapshot(id: a.actionID, camera: a.camera, label: a.label, score: a.score,
                                             topScore: a.score, startTime: a.windowStart, endTime: nil,
                                             hasSnapshot: a.snapshot != nil)
            openActions[a.actionID] = snapshot
            activeLabels[a.camera, default: []].insert(a.label)
            struct CameraEvent: Encodable { var event_type: String; var id: String; var score: Float }
            return [
                eventMessage("new", snapshot, snapshot, qos: 1),
                MQTTMessage(topic: topics.label(a.camera, a.label), text: "ON", qos: 1, retain: true),
                MQTTMessage(topic: topics.cameraEvents(a.camera),
                            payload: MQTTJSON.encode(CameraEvent(event_type: a.label, id: a.actionID, score: a.score)),
                            qos: 1, retain: false),
            ]
        case .actionUpdate(let a):
            let before = openActions[a.actionID] ?? MQTTEventSnapshot(
                id: a.actionID, camera: a.camera, label: a.label, score: a.score, topScore: a.score,
                startTime: a.windowStart, endTime: nil)
            var after = before
            after.score = a.score
            after.topScore = max(before.topScore, a.score)
            after.hasSnapshot = before.hasSnapshot || a.snapshot != nil
            openActions[a.actionID] = after
            return [eventMessage("update", before, after, qos: qos)]
        case .actionEnd(let a):
            let before = openActions.removeValue(forKey: a.actionID) ?? MQTTEventSnapshot(
                id: a.actionID, camera: a.camera, label: a.label, score: a.score, topScore: a.score,
                startTime: a.windowStart, endTime: nil)
            var after = before
            after.score = a.score
            after.topScore = max(before.topScore, a.score)
            after.hasSnapshot = before.hasSnapshot || a.snapshot != nil
            after.endTime = a.windowEnd
            after.hasClip = a.clip != nil
            let stillOn = openActions.values.contains { $0.camera == a.camera && $0.label == a.label }
            var out = [eventMessage("end", before, after, qos: 1)]
            if !stillOn {
                activeLabels[a.camera]?.remove(a.label)
                out.append(MQTTMessage(topic: topics.label(a.camera, a.label), text: "OFF", qos: 1, retain: true))
            }
            return out
        case .cameraStatus(let s):
            cameraStatus[s.camera] = s.status.rawValue
            return [MQTTMessage(topic: topics.status(s.camera), text: s.status.rawValue, qos: qos, retain: true)]
        case .stats(let stats):
            return [MQTTMessage(topic: topics.stats, payload: MQTTJSON.encode(stats), qos: qos, retain: false)]
        case .hello:
            return []
        }
    }

    /// After a SIGHUP reload: the cameras and labels now watched. Dropped ones get empty
    /// retained payloads on their state topics (the broker forgets them) and, with Home
    /// Assistant, leave the discovery payload; new labels start OFF.
    public func update(cameras next: [Camera]) {
        lock.withLock {
            let before = cameras
            cameras = next
            let nextLabels = Dictionary(next.map { ($0.id, Set($0.labels)) }, uniquingKeysWith: { a, _ in a })
            let beforeLabels = Dictionary(before.map { ($0.id, Set($0.labels)) }, uniquingKeysWith: { a, _ in a })
            for camera in before {
                let kept = nextLabels[camera.id]
                for label in camera.labels where kept?.contains(label) != true {
                    outbox.append(MQTTMessage(topic: topics.label(camera.id, label), payload: [], qos: 1, retain: true))
                }
                if kept == nil {
                    outbox.append(MQTTMessage(topic: topics.status(camera.id), payload: [], qos: 1, retain: true))
                    cameraStatus.removeValue(forKey: camera.id)
                    activeLabels.removeValue(forKey: camera.id)
                }
            }
            for camera in next {
                for label in camera.labels where beforeLabels[camera.id]?.contains(label) != true {
                    outbox.append(MQTTMessage(topic: topics.label(camera.id, label), text: "OFF", qos: 1, retain: true))
                }
            }
            if let discovery {
                let kept = discovery.components(for: next)
                for (id, platform) in discovery.components(for: before) where kept[id] == nil {
                    removedComponents[id] = platform
                }
                discoveryDue = true
            }
        }
    }

    // MARK: - Stopping

    /// Sends what is queued (for up to `timeout` seconds, if connected), then the retained
    /// `stopped` and a clean DISCONNECT (so the broker does not publish the last will).
    /// Returns the final counters; `unsent` is what never reached the broker.
    @discardableResult
    public func stop(timeout: Double) -> Counters {
        let deadline = Date().addingTimeInterval(timeout)
        lock.withLock {
            stopping = true
            stopDeadline = deadline
            lock.broadcast()
            // One second more for the `stopped` message and DISCONNECT.
            while !finished && thread != nil {
                if !lock.wait(until: deadline.addingTimeInterval(1.5)) { break }
            }
        }
        return counters
    }

    private var stopDeadline: Date?

    // MARK: - Network thread

    private func run() {
        defer {
            lock.withLock {
                unsent += outbox.count + inFlight.count
                _ = outbox.drain()
                finished = true
                connected = false
                lock.broadcast()
            }
        }
        var transport: MQTTTransport?
        var backoff = initialBackoff
        var lastProblem = ""
        let stopAt = { [self] in lock.withLock { stopping } }
        while !stopAt() {
            do {
                if transport == nil { transport = try makeTransport() }
                try transport!.connect()
                try session(transport!)
                return
            } catch {
                if lock.withLock({ connected }) {
                    backoff = initialBackoff
                    lastProblem = ""
                }
                let problem = "\(error)"
                if problem != lastProblem {
                    log(.warning, "mqtt: \(configuration.host):\(configuration.port): \(problem); retrying with backoff up to \(Int(maxBackoff)) s")
                    lastProblem = problem
                }
                lock.withLock {
                    connected = false
                    connectFailures += 1
                }
            }
            // Wait before the next attempt; `stop` cuts the wait short.
            lock.withLock {
                if !stopping { _ = lock.wait(until: Date().addingTimeInterval(backoff)) }
            }
            backoff = min(backoff * 2, maxBackoff)
        }
    }

    /// Message ids handed to the transport and not yet delivered. Network thread only.
    private var inFlight: Set<Int32> = []

    /// One connection: returns after a clean stop, throws when it breaks or is refused.
    private func session(_ transport: MQTTTransport) throws {
        lock.withLock {
            // What was in flight on the last connection is not tracked across reconnects.
            lostInFlight += inFlight.count
        }
        inFlight.removeAll()
        var accepted = false
        var stoppingSince: Date?
        while true {
            for event in try transport.poll(timeout: 0.05) {
                switch event {
                case .connected:
                    accepted = true
                    lock.withLock { connected = true; discoveryDue = discovery != nil }
                    log(.info, "mqtt: connected to \(configuration.host):\(configuration.port) (MQTT \(configuration.protocolVersion.rawValue))")
                    if let discovery { try transport.subscribe(discovery.birthTopic, qos: 1) }
                    try publishState(transport)
                case .refused(let reason):
                    transport.disconnect()
                    throw MQTTTransportError("the broker refused the connection: \(reason)")
                case .delivered(let mid):
                    if inFlight.remove(mid) != nil { lock.withLock { sent += 1 } }
                case .message(let topic, let payload):
                    if let discovery, topic == discovery.birthTopic, String(decoding: payload, as: UTF8.self) == "online" {
                        lock.withLock { discoveryDue = true }
                    }
                }
            }
            guard accepted else {
                if lock.withLock({ stopping }) { return }
                continue
            }
            if let discovery, let payload = lock.withLock({ () -> MQTTMessage? in
                guard discoveryDue else { return nil }
                discoveryDue = false
                defer { removedComponents.removeAll() }
                return discovery.message(cameras: cameras, removed: removedComponents, topics: topics)
            }) {
                try send(payload, transport)
            }
            while inFlight.count < window, let message = lock.withLock({ outbox.removeFirst() }) {
                try send(message, transport)
            }
            if lock.withLock({ stopping }) {
                let deadline = lock.withLock { stopDeadline } ?? Date()
                if stoppingSince == nil { stoppingSince = Date() }
                let drained = lock.withLock { outbox.isEmpty } && inFlight.isEmpty
                if drained || Date() >= deadline {
                    try finish(transport, until: max(deadline, Date().addingTimeInterval(1)))
                    return
                }
            }
        }
    }

    private func send(_ message: MQTTMessage, _ transport: MQTTTransport) throws {
        inFlight.insert(try transport.publish(message))
    }

    /// After a connect: availability, every camera's status and label state (retained, so a
    /// broker that lost them, e.g. restarted without persistence, has them again).
    private func publishState(_ transport: MQTTTransport) throws {
        let state = lock.withLock { (cameras, cameraStatus, activeLabels) }
        try send(MQTTMessage(topic: topics.available, text: "online", qos: 1, retain: true), transport)
        for camera in state.0 {
            if let status = state.1[camera.id] {
                try send(MQTTMessage(topic: topics.status(camera.id), text: status, qos: configuration.qos, retain: true), transport)
            }
            let on = state.2[camera.id] ?? []
            for label in camera.labels {
                try send(MQTTMessage(topic: topics.label(camera.id, label), text: on.contains(label) ? "ON" : "OFF",
                                     qos: 1, retain: true), transport)
            }
        }
    }

    /// The retained `stopped`, its acknowledgement (until `deadline`), DISCONNECT.
    private func finish(_ transport: MQTTTransport, until deadline: Date) throws {
        let mid = try transport.publish(MQTTMessage(topic: topics.available, text: "stopped", qos: 1, retain: true))
        var delivered = false
        while !delivered && Date() < deadline {
            for case .delivered(let id) in try transport.poll(timeout: 0.05) {
                if id == mid { delivered = true } else if inFlight.remove(id) != nil { lock.withLock { sent += 1 } }
            }
        }
        transport.disconnect()
    }
}
