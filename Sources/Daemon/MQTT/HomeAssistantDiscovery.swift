import Foundation

/// Home Assistant's device-based MQTT discovery: one retained payload on
/// `<discovery_prefix>/device/<id>/config` with `device`, `origin`, availability and the
/// `components`, per camera:
///
/// - `<camera>_action`: an `event` entity, `event_types` = the camera's labels, fired from
///   `<prefix>/events/<camera>`;
/// - `<camera>_label_<label>`: an occupancy `binary_sensor` per label, from `<prefix>/<camera>/<label>`;
/// - `<camera>_status`: an enum `sensor` from `<prefix>/<camera>/status`.
///
/// All are available while `<prefix>/available` is `online`. A component that leaves (a camera
/// or label dropped on reload) is sent once with only its `platform`, which is how Home
/// Assistant removes one component of a device. `<id>` is `client_id` with every character
/// outside `[A-Za-z0-9_-]` as `_`.
struct HomeAssistantDiscovery: Sendable {
    let prefix: String
    let deviceID: String
    let version: String

    init(configuration: DaemonConfiguration.MQTT, version: String) {
        prefix = configuration.discoveryPrefix
        deviceID = Self.slug(configuration.clientID)
        self.version = version
    }

    /// Home Assistant's birth message arrives here (`online` after it starts).
    var birthTopic: String { "\(prefix)/status" }
    var topic: String { "\(prefix)/device/\(deviceID)/config" }

    static func slug(_ name: String) -> String {
        let s = String(name.unicodeScalars.map { c -> Character in
            ("0"..."9").contains(c) || ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" || c == "-"
                ? Character(c) : "_"
        })
        return s.isEmpty ? "_" : s
    }

    /// Component id → platform, for every camera and label.
    func components(for cameras: [MQTTPublisher.Camera]) -> [String: String] {
        var out: [String: String] = [:]
        for camera in cameras {
            let c = Self.slug(camera.id)
            out["\(c)_action"] = "event"
            out["\(c)_status"] = "sensor"
            for id in labelComponentIDs(camera).map(\.id) { out[id] = "binary_sensor" }
        }
        return out
    }

    /// One component id per label, unique within the camera (a slug taken twice gets `_2`, …).
    func labelComponentIDs(_ camera: MQTTPublisher.Camera) -> [(label: String, id: String)] {
        var used: Set<String> = []
        return camera.labels.map { label in
            let base = "\(Self.slug(camera.id))_label_\(Self.slug(label).lowercased())"
            var id = base, n = 2
            while used.contains(id) { id = "\(base)_\(n)"; n += 1 }
            used.insert(id)
            return (label, id)
        }
    }

    func message(cameras: [MQTTPublisher.Camera], removed: [String: String], topics: MQTTTopics) -> MQTTMessage {
        var components: [String: [String: Any]] = [:]
        for (id, platform) in removed { components[id] = ["platform": platform] }
        for camera in cameras {
            let c = Self.slug(camera.id)
            components["\(c)_action"] = [
                "platform": "event", "name": "\(camera.id) action", "unique_id": "\(deviceID)_\(c)_action",
                "state_topic": topics.cameraEvents(camera.id), "event_types": camera.labels, "qos": 1,
            ]
            components["\(c)_status"] = [
                "platform": "sensor", "name": "\(camera.id) status", "unique_id": "\(deviceID)_\(c)_status",
                "state_topic": topics.status(camera.id), "device_class": "enum",
                "options": ["online", "offline", "stalled"],
            ]
            for (label, id) in labelComponentIDs(camera) {
                components[id] = [
                    "platform": "binary_sensor", "name": "\(camera.id) \(label)", "unique_id": "\(deviceID)_\(id)",
                    "state_topic": topics.label(camera.id, label), "device_class": "occupancy",
                    "payload_on": "ON", "payload_off": "OFF",
                ]
            }
        }
        let payload: [String: Any] = [
            "device": ["identifiers": [deviceID], "name": "m2clipd \(deviceID)", "manufacturer": "m2clip",
                       "model": "m2clipd", "sw_version": version],
            "origin": ["name": "m2clipd", "sw_version": version],
            "availability": [["topic": topics.available,
                               "value_template": "{{ 'online' if value == 'online' else 'offline' }}"]],
            "components": components,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return MQTTMessage(topic: topic, payload: Array(data), qos: 1, retain: true)
    }
}
