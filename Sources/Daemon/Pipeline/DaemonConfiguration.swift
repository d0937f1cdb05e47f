import Foundation
import Yams

/// m2clipd's configuration, read from one YAML file:
///
///     model: models/ucf101.m2c            # relative paths are relative to this file
///     socket: { path: /run/m2clip/events.sock, mode: "0660" }
///     threads: 4                          # optional; default: all cores
///     stats_interval_s: 10                # optional
///     shutdown_timeout_s: 5               # optional
///     cameras:
///       - id: door
///         source: { file: clips/door.mp4, loop: true }   # or { v4l2: /dev/video0, width, height, fps, format }
///                                                        # or { url: rtsp://… }
///         sample_fps: 8                   # frames per second taken from the camera
///         stride: 4                       # a window every `stride` sampled frames
///         frames: 8                       # optional: T (default: the model's)
///         head: zero-shot                 # optional: vc | zero-shot (default: auto)
///         thresholds: { start: 0.6, end: 0.4, min_duration_s: 1.0 }
///         labels: [opening door, closing door]   # optional, zero-shot only
///         stall_timeout_s: 5              # optional: no frame this long → camera.status stalled
///     state_dir: /var/lib/m2clipd/door    # optional; default: systemd's $STATE_DIRECTORY
///     history: { retention_days: 30, max_mb: 256 }   # optional: see `History`
///     mqtt: { host: broker.lan, … }       # optional: see `MQTT`
///     metrics: { listen: "127.0.0.1:9464" } # optional: see `Metrics`
///     snapshots: { quality: 85, … }       # optional: see `Snapshots`
///     clips: { pre_roll_s: 5, … }         # optional: see `Clips`
///
/// `load(path:)` rejects unknown keys and checks every value; errors name the file and the
/// field (`ConfigurationError`).
public struct DaemonConfiguration: Codable, Sendable, Equatable {
    public var model: String
    public var socket: Socket
    /// nil: one per core.
    public var threads: Int?
    public var statsIntervalSeconds: Double
    public var shutdownTimeoutSeconds: Double
    public var cameras: [Camera]
    /// Where the daemon keeps what outlives a run (event history, snapshots); created when
    /// missing. nil when neither `state_dir` nor systemd's `$STATE_DIRECTORY` gives one.
    public var stateDirectory: String?
    /// Event history under `stateDirectory` (on by default when there is one).
    public var history = History()
    /// nil: no MQTT.
    public var mqtt: MQTT?
    /// nil: no metrics endpoint.
    public var metrics: Metrics?
    /// nil: no snapshots.
    public var snapshots: Snapshots?
    /// nil: no clips.
    public var clips: Clips?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, socket, threads, cameras, history, mqtt, metrics
        case stateDirectory = "state_dir"
        case snapshots, clips
        case statsIntervalSeconds = "stats_interval_s", shutdownTimeoutSeconds = "shutdown_timeout_s"
    }

    public struct Socket: Codable, Sendable, Equatable {
        public var path: String
        /// Octal permission string as written, e.g. "0660".
        public var mode: String

        enum CodingKeys: String, CodingKey, CaseIterable { case path, mode }

        /// `mode` as permission bits (valid after `load`).
        public var permissions: UInt32 { UInt32(mode, radix: 8) ?? 0o660 }
    }

    public struct Camera: Codable, Sendable, Equatable {
        public var id: String
        public var source: Source
        public var sampleFPS: Double
        public var stride: Int
        /// T; nil: the model's.
        public var frames: Int?
        /// nil: the VC head when the model has a trained one matching its labels, else zero-shot.
        public var head: Head?
        public var thresholds: Thresholds
        /// Replaces the model's label set for zero-shot scoring on this camera.
        public var labels: [String]?
        /// A source that is online but delivers no frame for this long is reported `stalled`.
        public var stallTimeoutSeconds: Double = 5

        enum CodingKeys: String, CodingKey, CaseIterable {
            case id, source, stride, frames, head, thresholds, labels
            case sampleFPS = "sample_fps", stallTimeoutSeconds = "stall_timeout_s"
        }

        public init(id: String, source: Source, sampleFPS: Double = 8, stride: Int = 4, frames: Int? = nil,
                    head: Head? = nil, thresholds: Thresholds = .init(), labels: [String]? = nil,
                    stallTimeoutSeconds: Double = 5) {
            self.id = id
            self.source = source
            self.sampleFPS = sampleFPS
            self.stride = stride
            self.frames = frames
            self.head = head
            self.thresholds = thresholds
            self.labels = labels
            self.stallTimeoutSeconds = stallTimeoutSeconds
        }
    }

    public enum Head: String, Codable, Sendable {
        case vc
        case zeroShot = "zero-shot"
    }

    public enum Source: Codable, Sendable, Equatable {
        case file(path: String, loop: Bool)
        case v4l2(device: String, width: Int, height: Int, fps: Double, format: String?)
        case url(String)

        enum CodingKeys: String, CodingKey, CaseIterable { case file, loop, v4l2, width, height, fps, format, url }
    }

    /// Hysteresis: an action starts at `start` and lasts while its score stays at or above
    /// `end` (< `start`); shorter than `minDurationSeconds` it is not reported.
    public struct Thresholds: Codable, Sendable, Equatable {
        public var start: Float
        public var end: Float
        public var minDurationSeconds: Double

        enum CodingKeys: String, CodingKey, CaseIterable {
            case start, end
            case minDurationSeconds = "min_duration_s"
        }

        public init(start: Float = 0.6, end: Float = 0.4, minDurationSeconds: Double = 0) {
            self.start = start
            self.end = end
            self.minDurationSeconds = minDurationSeconds
        }
    }
}

/// A configuration problem: `config /etc/m2clip/m2clipd.yaml: cameras[1].thresholds.end: must
/// be below start (0.6)`.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    public let file: String
    /// Dotted path with indices, e.g. `cameras[1].thresholds.end`; empty for the whole file.
    public let field: String
    public let message: String

    public init(file: String, field: String, _ message: String) {
        self.file = file
        self.field = field
        self.message = message
    }

    public var description: String {
        "config \(file): " + (field.isEmpty ? "" : "\(field): ") + message
    }
}

// MARK: - Decoding

/// Any key, to list the keys a mapping really has.
struct AnyKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    init?(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
}

/// Thrown while decoding; `load` adds the file.
struct FieldError: Error {
    let path: [CodingKey]
    let message: String
}

extension Decoder {
    /// Throws for a key that `Keys` does not know, naming it.
    func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_: Keys.Type) throws {
        let known = Set(Keys.allCases.map(\.stringValue))
        let present = try container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        if let unknown = present.sorted().first(where: { !known.contains($0) }) {
            throw FieldError(path: codingPath + [AnyKey(stringValue: unknown)],
                             message: "unknown key (expected one of: \(known.sorted().joined(separator: ", ")))")
        }
    }
}

extension DaemonConfiguration {
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        socket = try c.decode(Socket.self, forKey: .socket)
        threads = try c.decodeIfPresent(Int.self, forKey: .threads)
        statsIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .statsIntervalSeconds) ?? 10
        shutdownTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .shutdownTimeoutSeconds) ?? 5
        cameras = try c.decode([Camera].self, forKey: .cameras)
        stateDirectory = try c.decodeIfPresent(String.self, forKey: .stateDirectory)
        history = try c.decodeIfPresent(History.self, forKey: .history) ?? History()
        mqtt = try c.decodeIfPresent(MQTT.self, forKey: .mqtt)
        metrics = try c.decodeIfPresent(Metrics.self, forKey: .metrics)
        snapshots = try c.decodeIfPresent(Snapshots.self, forKey: .snapshots)
        clips = try c.decodeIfPresent(Clips.self, forKey: .clips)
    }
}

extension DaemonConfiguration.Socket {
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decode(String.self, forKey: .path)
        mode = try c.decodeIfPresent(String.self, forKey: .mode) ?? "0660"
    }
}

extension DaemonConfiguration.Camera {
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        source = try c.decode(DaemonConfiguration.Source.self, forKey: .source)
        sampleFPS = try c.decodeIfPresent(Double.self, forKey: .sampleFPS) ?? 8
        stride = try c.decodeIfPresent(Int.self, forKey: .stride) ?? 4
        frames = try c.decodeIfPresent(Int.self, forKey: .frames)
        if let name = try c.decodeIfPresent(String.self, forKey: .head) {
            guard let head = DaemonConfiguration.Head(rawValue: name) else {
                throw FieldError(path: c.codingPath + [CodingKeys.head], message: "\"\(name)\" is not vc or zero-shot")
            }
            self.head = head
        } else {
            head = nil
        }
        thresholds = try c.decodeIfPresent(DaemonConfiguration.Thresholds.self, forKey: .thresholds) ?? .init()
        labels = try c.decodeIfPresent([String].self, forKey: .labels)
        stallTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .stallTimeoutSeconds) ?? 5
    }
}

extension DaemonConfiguration.Thresholds {
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        start = try c.decode(Float.self, forKey: .start)
        end = try c.decode(Float.self, forKey: .end)
        minDurationSeconds = try c.decodeIfPresent(Double.self, forKey: .minDurationSeconds) ?? 0
    }
}

extension DaemonConfiguration.Source {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kinds = [CodingKeys.file, .v4l2, .url].filter { c.contains($0) }
        guard kinds.count == 1 else {
            throw FieldError(path: decoder.codingPath, message: kinds.isEmpty
                ? "needs one of file, v4l2, url"
                : "has both \(kinds.map(\.stringValue).joined(separator: " and ")); give one")
        }
        func allow(_ keys: [CodingKeys]) throws {
            if let extra = c.allKeys.map(\.stringValue).sorted().first(where: { k in !keys.contains { $0.stringValue == k } }) {
                throw FieldError(path: decoder.codingPath + [AnyKey(stringValue: extra)],
                                 message: "unknown key for a \(kinds[0].stringValue) source")
            }
        }
        // Keys outside CodingKeys never reach `allKeys`: check them on an open container.
        let all = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        if let unknown = all.sorted().first(where: { CodingKeys(stringValue: $0) == nil }) {
            throw FieldError(path: decoder.codingPath + [AnyKey(stringValue: unknown)],
                             message: "unknown key for a \(kinds[0].stringValue) source")
        }
        switch kinds[0] {
        case .file:
            try allow([.file, .loop])
            self = .file(path: try c.decode(String.self, forKey: .file),
                         loop: try c.decodeIfPresent(Bool.self, forKey: .loop) ?? false)
        case .v4l2:
            try allow([.v4l2, .width, .height, .fps, .format])
            self = .v4l2(device: try c.decode(String.self, forKey: .v4l2),
                         width: try c.decode(Int.self, forKey: .width), height: try c.decode(Int.self, forKey: .height),
                         fps: try c.decode(Double.self, forKey: .fps),
                         format: try c.decodeIfPresent(String.self, forKey: .format))
        default:
            try allow([.url])
            self = .url(try c.decode(String.self, forKey: .url))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .file(let path, let loop):
            try c.encode(path, forKey: .file)
            try c.encode(loop, forKey: .loop)
        case .v4l2(let device, let width, let height, let fps, let format):
            try c.encode(device, forKey: .v4l2)
            try c.encode(width, forKey: .width)
            try c.encode(height, forKey: .height)
            try c.encode(fps, forKey: .fps)
            try c.encodeIfPresent(format, forKey: .format)
        case .url(let url):
            try c.encode(url, forKey: .url)
        }
    }
}
