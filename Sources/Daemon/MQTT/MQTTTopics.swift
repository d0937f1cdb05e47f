import Foundation

/// The topics m2clipd publishes under `topic_prefix` (shaped like Frigate's):
///
///     <prefix>/available            retained: online | stopped (clean exit) | offline (last will)
///     <prefix>/events               {"type":"new|update|end","before":{…},"after":{…}}
///     <prefix>/events/<camera>      {"event_type":<label>,"id":…,"score":…} on new (Home Assistant's event entity)
///     <prefix>/<camera>/<label>     retained: ON | OFF
///     <prefix>/<camera>/<label>/snapshot   retained: the JPEG of the latest action's best frame
///     <prefix>/<camera>/status      retained: online | offline | stalled
///     <prefix>/stats                the stats event as JSON
///
/// Camera ids and labels become one topic segment each: `+`, `#`, `/` and control characters
/// are replaced by `_` (an empty name becomes `_`), and a label whose segment is `status`
/// becomes `status_` so it cannot overwrite the camera's status topic.
public struct MQTTTopics: Sendable, Equatable {
    public let prefix: String

    public init(prefix: String) { self.prefix = prefix }

    /// Camera segments that would land on a topic of m2clipd's own.
    static let reservedCameraSegments: Set<String> = ["available", "events", "stats"]

    /// `name` as one topic segment (the rule above).
    public static func segment(_ name: String) -> String {
        let mapped = String(name.unicodeScalars.map { s -> Character in
            s == "+" || s == "#" || s == "/" || s.value < 0x20 || s.value == 0x7f ? "_" : Character(s)
        })
        return mapped.isEmpty ? "_" : mapped
    }

    static func labelSegment(_ label: String) -> String {
        let s = segment(label)
        return s == "status" ? "status_" : s
    }

    public var available: String { "\(prefix)/available" }
    public var events: String { "\(prefix)/events" }
    public var stats: String { "\(prefix)/stats" }
    public func cameraEvents(_ camera: String) -> String { "\(prefix)/events/\(Self.segment(camera))" }
    public func label(_ camera: String, _ label: String) -> String {
        "\(prefix)/\(Self.segment(camera))/\(Self.labelSegment(label))"
    }
    public func snapshot(_ camera: String, _ label: String) -> String { self.label(camera, label) + "/snapshot" }
    public func status(_ camera: String) -> String { "\(prefix)/\(Self.segment(camera))/status" }
}

/// One message for the broker.
public struct MQTTMessage: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int
    public var retain: Bool

    public init(topic: String, payload: [UInt8], qos: Int, retain: Bool) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }

    public init(topic: String, text: String, qos: Int, retain: Bool) {
        self.init(topic: topic, payload: Array(text.utf8), qos: qos, retain: retain)
    }

    public var text: String { String(decoding: payload, as: UTF8.self) }
}

/// The `before`/`after` objects of `<prefix>/events` (Frigate's event fields that apply here).
struct MQTTEventSnapshot: Encodable, Equatable {
    var id: String
    var camera: String
    var label: String
    var score: Float
    var topScore: Float
    var startTime: Double
    /// nil (JSON null) until the action ends.
    var endTime: Double?
    /// An event has named a snapshot file for the action.
    var hasSnapshot = false
    /// The end event named a clip for the action (the file follows after the post-roll).
    var hasClip = false

    enum CodingKeys: String, CodingKey {
        case id, camera, label, score, topScore = "top_score", startTime = "start_time", endTime = "end_time"
        case hasSnapshot = "has_snapshot", hasClip = "has_clip"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(camera, forKey: .camera)
        try c.encode(label, forKey: .label)
        try c.encode(score, forKey: .score)
        try c.encode(topScore, forKey: .topScore)
        try c.encode(startTime, forKey: .startTime)
        if let endTime { try c.encode(endTime, forKey: .endTime) } else { try c.encodeNil(forKey: .endTime) }
        try c.encode(hasSnapshot, forKey: .hasSnapshot)
        try c.encode(hasClip, forKey: .hasClip)
    }
}

struct MQTTEventMessage: Encodable {
    var type: String
    var before: MQTTEventSnapshot
    var after: MQTTEventSnapshot
}

enum MQTTJSON {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return (try? Array(encoder.encode(value))) ?? Array("{}".utf8)
    }
}
