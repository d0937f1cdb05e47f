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
