import Foundation

/// What the daemon tells its subscribers, one JSON object per line (NDJSON). `EventBus`
/// stamps `v`, `seq` (monotonic per daemon run) and `epoch` (this run's id) on publication.
/// The schema is documented in docs/events.schema.json.
public enum DaemonEvent: Sendable, Equatable {
    /// First line on every connection.
    case hello(Hello)
    case actionStart(Action)
    case actionUpdate(Action)
    case actionEnd(Action)
    case cameraStatus(CameraStatus)
    case stats(Stats)

    public struct Hello: Codable, Sendable, Equatable {
        public var daemon: String
        public var version: String
        public var model: String
        public var cameras: [String]
        public var labels: Int
    }

    /// One scored label.
    public struct Score: Codable, Sendable, Equatable {
        public var label: String
        public var score: Float
    }

    /// An action on one camera: `start` when its score rises above the start threshold,
    /// `update` while it lasts, `end` when it falls below the end threshold (or the camera
    /// stops, or the daemon shuts down).
    public struct Action: Codable, Sendable, Equatable {
        public var actionID: String
        public var camera: String
        public var label: String
        public var score: Float
        public var top: [Score]
        /// Wall-clock (seconds since 1970) and monotonic (seconds) time of the window's first
        /// and last frame.
        public var windowStart: Double
        public var windowEnd: Double
        public var windowStartMonotonic: Double
        public var windowEndMonotonic: Double
        /// Model time for the window.
        public var latencyMs: Double
        /// The action's snapshot as it is on disk when the event is sent (absent: none yet,
        /// or snapshots are off).
        public var snapshot: Snapshot? = nil
        /// On `action.end` only, with a `clips:` section: the MP4 that will be written once
        /// the post-roll has been captured (absent: clips are off for the camera, or the
        /// writer's queue was full).
        public var clip: Clip? = nil

        enum CodingKeys: String, CodingKey {
            case actionID = "action_id", camera, label, score, top
            case windowStart = "window_start", windowEnd = "window_end"
            case windowStartMonotonic = "window_start_mono", windowEndMonotonic = "window_end_mono"
            case latencyMs = "latency_ms", snapshot, clip
        }
    }

    /// An action's MP4 clip: the camera's own H.264 packets (stream copy), or H.264 encoded
    /// from its frames (other sources), from the keyframe at or before `startTime` to
    /// `endTime`, or to where the source stopped.
    public struct Clip: Codable, Sendable, Equatable {
        /// Absolute path under `<state_dir>/clips`; the file appears there, whole, after the
        /// post-roll (`stats.clips` counts the ones that could not be written).
        public var path: String
        /// Capture times (seconds since 1970): the action's start minus the pre-roll, its end
        /// plus the post-roll.
        public var startTime: Double
        public var endTime: Double

        public init(path: String, startTime: Double, endTime: Double) {
            self.path = path
            self.startTime = startTime
            self.endTime = endTime
        }

        enum CodingKeys: String, CodingKey { case path, startTime = "start_time", endTime = "end_time" }
    }

    /// A JPEG of the last frame of the action's best-scoring window so far.
    public struct Snapshot: Codable, Sendable, Equatable {
        /// Absolute path under `<state_dir>/snapshots`.
        public var path: String
        /// Capture time of the frame (seconds since 1970) and the window's score for the label.
        public var frameTime: Double
        public var score: Float

        public init(path: String, frameTime: Double, score: Float) {
            self.path = path
            self.frameTime = frameTime
            self.score = score
        }

        enum CodingKeys: String, CodingKey { case path, frameTime = "frame_time", score }
    }

    public struct CameraStatus: Codable, Sendable, Equatable {
        public enum State: String, Codable, Sendable { case online, offline, stalled }
        public var camera: String
        public var status: State
        public var reason: String?
    }

    public struct Stats: Codable, Sendable, Equatable {
        public struct Camera: Codable, Sendable, Equatable {
            public var camera: String
            public var fpsIn: Double
            public var fpsSampled: Double
            public var fpsProcessed: Double
            public var skippedWindows: Int
            public var droppedFrames: Int
            public var inferenceP50Ms: Double
            public var inferenceP90Ms: Double

            enum CodingKeys: String, CodingKey {
                case camera, fpsIn = "fps_in", fpsSampled = "fps_sampled", fpsProcessed = "fps_processed"
                case skippedWindows = "skipped_windows", droppedFrames = "dropped_frames"
                case inferenceP50Ms = "inference_p50_ms", inferenceP90Ms = "inference_p90_ms"
            }
        }
        public var cameras: [Camera]
        /// The MQTT publisher's counters, when one is configured.
        public var mqtt: MQTTPublisher.Counters? = nil
        /// The snapshot writer's counters, when snapshots are on.
        public var snapshots: SnapshotWriter.Counters? = nil
        /// The clip writer's counters, when clips are on.
        public var clips: ClipWriter.Counters? = nil
        /// The event history's counters, when history is on.
        public var history: EventHistory.Counters? = nil
    }

    /// The `type` field of the line.
    public var type: String {
        switch self {
        case .hello: return "hello"
        case .actionStart: return "action.start"
        case .actionUpdate: return "action.update"
        case .actionEnd: return "action.end"
        case .cameraStatus: return "camera.status"
        case .stats: return "stats"
        }
    }

    /// The camera the event is about, for subscriber filters (nil: every subscriber gets it).
    public var camera: String? {
        switch self {
        case .actionStart(let a), .actionUpdate(let a), .actionEnd(let a): return a.camera
        case .cameraStatus(let s): return s.camera
        case .hello, .stats: return nil
        }
    }
}
