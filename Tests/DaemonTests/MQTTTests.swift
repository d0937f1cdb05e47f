import Foundation
import Testing
@testable import Daemon

/// The MQTT publisher's pieces without a broker: the outbox's drop policy, the topic rule,
/// the event payloads (MQTTDaemonTests in CLITests runs it against a real broker).
@Suite struct MQTTTests {
    static func message(_ n: Int, qos: Int) -> MQTTMessage {
        MQTTMessage(topic: "t/\(n)", text: "\(n)", qos: qos, retain: false)
    }

    @Test func fullOutboxDropsTheOldestQoS0FirstAndCountsDrops() {
        var outbox = MQTTOutbox(capacity: 3)
        outbox.append(Self.message(1, qos: 1))
        outbox.append(Self.message(2, qos: 0))
        outbox.append(Self.message(3, qos: 0))
        outbox.append(Self.message(4, qos: 1))   // drops 2
        #expect(outbox.dropped == 1)
        outbox.append(Self.message(5, qos: 1))   // drops 3
        outbox.append(Self.message(6, qos: 1))   // all QoS 1: drops the oldest, 1
        #expect(outbox.dropped == 3 && outbox.count == 3)
        #expect(outbox.drain().map(\.text) == ["4", "5", "6"])
        #expect(outbox.isEmpty)
    }

    /// A superseded retained payload leaves the queue; the rest keep their order, uncounted.
    @Test func outboxRemovesASupersededTopic() {
        var outbox = MQTTOutbox(capacity: 8)
        for n in 0..<4 { outbox.append(Self.message(n, qos: 0)) }
        _ = outbox.removeFirst()
        outbox.append(MQTTMessage(topic: "t/1", text: "again", qos: 0, retain: true))
        outbox.removeQueued(topic: "t/1")
        #expect(outbox.drain().map(\.topic) == ["t/2", "t/3"] && outbox.dropped == 0)
    }

    @Test func outboxIsFIFO() {
        var outbox = MQTTOutbox(capacity: 1000)
        for n in 0..<600 { outbox.append(Self.message(n, qos: 0)) }
        var seen: [Int] = []
        while let m = outbox.removeFirst() { seen.append(Int(m.text)!) }
        #expect(seen == Array(0..<600) && outbox.dropped == 0)
    }

    @Test(arguments: [
        ("front door", "front door"), ("a/b", "a_b"), ("a+b#c", "a_b_c"), ("", "_"), ("tab\there", "tab_here"),
    ])
    func namesBecomeOneTopicSegment(name: String, segment: String) {
        #expect(MQTTTopics.segment(name) == segment)
    }

    @Test func topicsUnderThePrefix() {
        let topics = MQTTTopics(prefix: "home/m2clip")
        #expect(topics.label("front/door", "opening door") == "home/m2clip/front_door/opening door")
        #expect(topics.label("front", "status") == "home/m2clip/front/status_", "a label cannot overwrite the status")
        #expect(topics.status("front") == "home/m2clip/front/status")
        #expect(topics.cameraEvents("front") == "home/m2clip/events/front")
        #expect(topics.available == "home/m2clip/available")
    }

    @Test func homeAssistantIDsAreSlugsAndUniquePerCamera() {
        var mqtt = DaemonConfiguration.MQTT(host: "b", clientID: "m2clipd@host.lan")
        mqtt.homeAssistant = true
        let discovery = HomeAssistantDiscovery(configuration: mqtt, version: "t")
        #expect(discovery.topic == "homeassistant/device/m2clipd_host_lan/config")
        let ids = discovery.labelComponentIDs(.init(id: "front", labels: ["Opening door", "opening-door", "opening door"]))
        #expect(ids.map(\.id) == ["front_label_opening_door", "front_label_opening-door", "front_label_opening_door_2"])
    }
}

/// A transport that refuses `failures` connects, then accepts, delivers everything at once and
/// records what it was given.
final class ScriptedTransport: MQTTTransport, @unchecked Sendable {
    private let lock = NSLock()
    private var failures: Int
    private var pending: [MQTTTransportEvent] = []
    private var nextID: Int32 = 0
    private var _published: [MQTTMessage] = []
    private(set) var connects = 0

    init(failures: Int) { self.failures = failures }

    var published: [MQTTMessage] { lock.withLock { _published } }

    func connect() throws {
        try lock.withLock {
            connects += 1
            if failures > 0 { failures -= 1; throw MQTTTransportError("Connection refused") }
            pending.append(.connected)
        }
    }

    func poll(timeout: Double) throws -> [MQTTTransportEvent] {
        usleep(UInt32(min(timeout, 0.01) * 1e6))
        return lock.withLock { defer { pending.removeAll() }; return pending }
    }

    func publish(_ message: MQTTMessage) throws -> Int32 {
        lock.withLock {
            nextID += 1
            _published.append(message)
            pending.append(.delivered(nextID))
            return nextID
        }
    }

    func subscribe(_ topic: String, qos: Int) throws {}
    func disconnect() {}
}

@Suite struct MQTTPublisherTests {
    static func action(_ id: String, label: String = "wave", score: Float = 0.7) -> DaemonEvent.Action {
        DaemonEvent.Action(actionID: id, camera: "door", label: label, score: score, top: [], windowStart: 100,
                           windowEnd: 101, windowStartMonotonic: 1, windowEndMonotonic: 2, latencyMs: 3)
    }

    /// While the broker refuses, events wait in the buffer (updates dropped first when it is
    /// full); once connected, availability and state come first, then the buffer in order.
    @Test func buffersWhileDownThenSendsStateAndTheBufferInOrder() throws {
        var settings = DaemonConfiguration.MQTT(host: "broker", clientID: "t")
        settings.buffer = 4
        let transport = ScriptedTransport(failures: 2)
        let publisher = MQTTPublisher(configuration: settings, cameras: [.init(id: "door", labels: ["wave"])],
                                      version: "t", backoff: (0.05, 0.1), makeTransport: { transport }, log: { _, _ in })
        publisher.offer(.actionStart(Self.action("a")))          // events new, ON, events/door
        for score in [0.8, 0.9, 0.95] as [Float] { publisher.offer(.actionUpdate(Self.action("a", score: score))) }
        publisher.offer(.actionEnd(Self.action("a", score: 0.1))) // events end, OFF
        #expect(publisher.counters.queued == 4 && publisher.counters.dropped == 4)
        publisher.start()
        let deadline = Date().addingTimeInterval(5)
        while publisher.counters.queued > 0 || !publisher.counters.connected, Date() < deadline { usleep(10_000) }
        let final = publisher.stop(timeout: 1)
        #expect(transport.connects == 3)
        let topics = transport.published.map(\.topic)
        #expect(Array(topics.prefix(2)) == ["m2clip/available", "m2clip/door/wave"], "state first: \(topics)")
        #expect(transport.published.first?.text == "online")
        // The four that survived: new's ON and camera event (QoS 1) and end + OFF; the updates
        // (QoS 0) and, with only QoS 1 left, the oldest (events new) went.
        #expect(Array(topics.dropFirst(2).prefix(4)) == ["m2clip/door/wave", "m2clip/events/door", "m2clip/events", "m2clip/door/wave"])
        #expect(transport.published.last.map { ($0.topic, $0.text, $0.retain) } ?? ("", "", false) == ("m2clip/available", "stopped", true))
        #expect(final.dropped == 4 && final.unsent == 0 && final.sent == 6)
    }

    /// An action with a snapshot: `has_snapshot` turns true in the Frigate-shaped events from
    /// the first event that names one (and stays), and the JPEG goes retained, byte for byte,
    /// to `<prefix>/<camera>/<label>/snapshot`; one still queued for the topic is replaced.
    @Test func snapshotsAreFlaggedAndPublishedRetained() throws {
        let transport = ScriptedTransport(failures: 0)
        let publisher = MQTTPublisher(configuration: .init(host: "broker", clientID: "t"),
                                      cameras: [.init(id: "door", labels: ["wave"])], version: "t",
                                      makeTransport: { transport }, log: { _, _ in })
        var action = Self.action("a")
        publisher.offer(.actionStart(action))
        action.snapshot = .init(path: "/state/snapshots/door/2026-12-07/a.jpg", frameTime: 101, score: 0.7)
        let jpeg: [UInt8] = [0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9]
        publisher.offerSnapshot(camera: "door", label: "wave", jpeg: [0xFF, 0xD8, 0xFF, 0xD9]) // superseded while queued
        publisher.offerSnapshot(camera: "door", label: "wave", jpeg: jpeg)
        publisher.offer(.actionUpdate(action))
        action.snapshot = nil // a later event without one keeps the flag
        publisher.offer(.actionEnd(action))
        publisher.start()
        let deadline = Date().addingTimeInterval(5)
        while publisher.counters.queued > 0 || !publisher.counters.connected, Date() < deadline { usleep(10_000) }
        publisher.stop(timeout: 1)
        let published = transport.published
        let snapshots = published.filter { $0.topic == "m2clip/door/wave/snapshot" }
        #expect(snapshots.count == 1)
        let snapshot = try #require(snapshots.first)
        #expect(snapshot.payload == jpeg && snapshot.retain && snapshot.qos == 0)
        let flags = published.filter { $0.topic == "m2clip/events" }.map { message -> [Bool] in
            let json = (try? JSONSerialization.jsonObject(with: Data(message.payload))) as? [String: Any] ?? [:]
            return ["before", "after"].map { (json[$0] as? [String: Any])?["has_snapshot"] as? Bool ?? false }
        }
        #expect(flags == [[false, false], [false, true], [true, true]])
    }

    /// `has_clip` is false until the end event, true in its `after` when that event names a
    /// clip (the file follows after the post-roll), and false when it names none.
    @Test func clipsAreFlaggedOnTheEnd() throws {
        let transport = ScriptedTransport(failures: 0)
        let publisher = MQTTPublisher(configuration: .init(host: "broker", clientID: "t"),
                                      cameras: [.init(id: "door", labels: ["wave"])], version: "t",
                                      makeTransport: { transport }, log: { _, _ in })
        var action = Self.action("a")
        publisher.offer(.actionStart(action))
        publisher.offer(.actionUpdate(action))
        action.clip = .init(path: "/state/clips/door/2026-12-07/a.mp4", startTime: 95, endTime: 108)
        publisher.offer(.actionEnd(action))
        let other = Self.action("b")
        publisher.offer(.actionStart(other))
        publisher.offer(.actionEnd(other))
        publisher.start()
        let deadline = Date().addingTimeInterval(5)
        while publisher.counters.queued > 0 || !publisher.counters.connected, Date() < deadline { usleep(10_000) }
        publisher.stop(timeout: 1)
        let flags = transport.published.filter { $0.topic == "m2clip/events" }.map { message -> [Bool?] in
            let json = (try? JSONSerialization.jsonObject(with: Data(message.payload))) as? [String: Any] ?? [:]
            return ["before", "after"].map { (json[$0] as? [String: Any])?["has_clip"] as? Bool }
        }
        #expect(flags == [[false, false], [false, false], [false, true], [false, false], [false, false]])
    }
}
