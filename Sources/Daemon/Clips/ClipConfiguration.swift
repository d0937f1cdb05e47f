import Foundation

extension DaemonConfiguration {
    /// The optional `clips:` section: an MP4 of each action with pre- and post-roll under
    /// `<state_dir>/clips`, named in the `action.end` event. A source whose video is H.264 (a
    /// file, a network stream: checked on each connection) gives stream copies of its own
    /// packets; any other (a V4L2 camera, a file or stream in another codec) is encoded to H.264
    /// from its frames at `encode_fps`, as they arrive. Needs `state_dir`.
    ///
    ///     clips:
    ///       enabled: true            # default true
    ///       cameras: [door]          # optional: default every camera
    ///       pre_roll_s: 5            # seconds before the action's first window
    ///       post_roll_s: 5           # and after its last
    ///       max_s: 120               # longest clip; the per-camera buffer holds this much
    ///       buffer_mb: 64            # and at most this many MB of packets per camera
    ///       encode_fps: 15           # frame rate of encoded clips (sources that are not H.264)
    ///       retention_days: 7
    ///       max_mb: 4096             # all clips together; the oldest go first
    public struct Clips: Codable, Sendable, Equatable {
        public var enabled: Bool
        /// nil: every camera.
        public var cameras: [String]?
        public var preRollSeconds: Double
        public var postRollSeconds: Double
        public var maxSeconds: Double
        public var bufferMB: Double
        public var encodeFPS: Double
        public var retentionDays: Double
        public var maxMB: Double

        enum CodingKeys: String, CodingKey, CaseIterable {
            case enabled, cameras, preRollSeconds = "pre_roll_s", postRollSeconds = "post_roll_s"
            case maxSeconds = "max_s", bufferMB = "buffer_mb", encodeFPS = "encode_fps", retentionDays = "retention_days", maxMB = "max_mb"
        }

        public init(enabled: Bool = true, cameras: [String]? = nil, preRollSeconds: Double = 5,
                    postRollSeconds: Double = 5, maxSeconds: Double = 120, bufferMB: Double = 64, encodeFPS: Double = 15,
                    retentionDays: Double = 7, maxMB: Double = 4096) {
            self.enabled = enabled
            self.cameras = cameras
            self.preRollSeconds = preRollSeconds
            self.postRollSeconds = postRollSeconds
            self.maxSeconds = maxSeconds
            self.bufferMB = bufferMB
            self.encodeFPS = encodeFPS
            self.retentionDays = retentionDays
            self.maxMB = maxMB
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? enabled
            cameras = try c.decodeIfPresent([String].self, forKey: .cameras)
            preRollSeconds = try c.decodeIfPresent(Double.self, forKey: .preRollSeconds) ?? preRollSeconds
            postRollSeconds = try c.decodeIfPresent(Double.self, forKey: .postRollSeconds) ?? postRollSeconds
            maxSeconds = try c.decodeIfPresent(Double.self, forKey: .maxSeconds) ?? maxSeconds
            bufferMB = try c.decodeIfPresent(Double.self, forKey: .bufferMB) ?? bufferMB
            encodeFPS = try c.decodeIfPresent(Double.self, forKey: .encodeFPS) ?? encodeFPS
            retentionDays = try c.decodeIfPresent(Double.self, forKey: .retentionDays) ?? retentionDays
            maxMB = try c.decodeIfPresent(Double.self, forKey: .maxMB) ?? maxMB
        }

        /// The byte budget of all clips together, and of one camera's packet buffer.
        public var maxBytes: Int64 { Int64(maxMB * 1024 * 1024) }
        public var bufferBytes: Int { Int(bufferMB * 1024 * 1024) }

        /// Whether camera `id` records clips.
        public func covers(_ id: String) -> Bool { enabled && (cameras?.contains(id) ?? true) }

        /// Checks each value and that every camera listed exists; `fail(field, message)` builds
        /// the error.
        func validate(cameras all: [Camera], stateDirectory: String?,
                      fail: (String, String) -> ConfigurationError) throws {
            for (key, value) in [("pre_roll_s", preRollSeconds), ("post_roll_s", postRollSeconds)]
            where !(value >= 0 && value.isFinite) {
                throw fail("clips.\(key)", "must not be negative (got \(value))")
            }
            for (key, value) in [("max_s", maxSeconds), ("buffer_mb", bufferMB), ("retention_days", retentionDays),
                                 ("max_mb", maxMB)] where !(value > 0 && value.isFinite) {
                throw fail("clips.\(key)", "must be positive (got \(value))")
            }
            guard encodeFPS >= 1 && encodeFPS <= 60 else {
                throw fail("clips.encode_fps", "must be from 1 to 60 (got \(encodeFPS))")
            }
            guard enabled else { return }
            guard stateDirectory != nil else {
                throw fail("clips", "needs state_dir (or systemd's StateDirectory=) to write them under")
            }
            if let cameras, let j = cameras.firstIndex(where: { id in !all.contains { $0.id == id } }) {
                throw fail("clips.cameras[\(j)]", "no camera \"\(cameras[j])\"")
            }
        }
    }
}
