import Foundation

extension DaemonConfiguration {
    /// The optional `clips:` section: an MP4 of each action with pre- and post-roll under
    /// `<state_dir>/clips`, named in the `action.end` event. Clips are stream copies of the
    /// camera's own H.264 packets (no re-encoding), so only file cameras whose video is H.264
    /// and network streams (whose codec is checked on each connection: another codec's clips
    /// fail, logged) can have them for now; a V4L2 camera or a file in another codec is a
    /// configuration error. Needs `state_dir`.
    ///
    ///     clips:
    ///       enabled: true            # default true
    ///       cameras: [door]          # optional: default every camera (H.264 files, network streams)
    ///       pre_roll_s: 5            # seconds before the action's first window
    ///       post_roll_s: 5           # and after its last
    ///       max_s: 120               # longest clip; the per-camera buffer holds this much
    ///       buffer_mb: 64            # and at most this many MB of packets per camera
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
        public var retentionDays: Double
        public var maxMB: Double

        enum CodingKeys: String, CodingKey, CaseIterable {
            case enabled, cameras, preRollSeconds = "pre_roll_s", postRollSeconds = "post_roll_s"
            case maxSeconds = "max_s", bufferMB = "buffer_mb", retentionDays = "retention_days", maxMB = "max_mb"
        }

        public init(enabled: Bool = true, cameras: [String]? = nil, preRollSeconds: Double = 5,
                    postRollSeconds: Double = 5, maxSeconds: Double = 120, bufferMB: Double = 64,
                    retentionDays: Double = 7, maxMB: Double = 4096) {
            self.enabled = enabled
            self.cameras = cameras
            self.preRollSeconds = preRollSeconds
            self.postRollSeconds = postRollSeconds
            self.maxSeconds = maxSeconds
            self.bufferMB = bufferMB
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
            retentionDays = try c.decodeIfPresent(Double.self, forKey: .retentionDays) ?? retentionDays
            maxMB = try c.decodeIfPresent(Double.self, forKey: .maxMB) ?? maxMB
        }

        /// The byte budget of all clips together, and of one camera's packet buffer.
        public var maxBytes: Int64 { Int64(maxMB * 1024 * 1024) }
        public var bufferBytes: Int { Int(bufferMB * 1024 * 1024) }

        /// Whether camera `id` records clips.
        public func covers(_ id: String) -> Bool { enabled && (cameras?.contains(id) ?? true) }

        /// Checks each value and that every camera it covers can give clips (an H.264 file:
        /// `codec(path)` reads the file's codec; a network stream); `fail(field, message)`
        /// builds the error.
        func validate(cameras all: [Camera], stateDirectory: String?, codec: (String) throws -> String,
                      fail: (String, String) -> ConfigurationError) throws {
            for (key, value) in [("pre_roll_s", preRollSeconds), ("post_roll_s", postRollSeconds)]
            where !(value >= 0 && value.isFinite) {
                throw fail("clips.\(key)", "must not be negative (got \(value))")
            }
            for (key, value) in [("max_s", maxSeconds), ("buffer_mb", bufferMB), ("retention_days", retentionDays),
                                 ("max_mb", maxMB)] where !(value > 0 && value.isFinite) {
                throw fail("clips.\(key)", "must be positive (got \(value))")
            }
            guard enabled else { return }
            guard stateDirectory != nil else {
                throw fail("clips", "needs state_dir (or systemd's StateDirectory=) to write them under")
            }
            if let cameras {
                if let j = cameras.firstIndex(where: { id in !all.contains { $0.id == id } }) {
                    throw fail("clips.cameras[\(j)]", "no camera \"\(cameras[j])\"")
                }
            }
            for (i, camera) in all.enumerated() where covers(camera.id) {
                let field = cameras.flatMap { $0.firstIndex(of: camera.id) }.map { "clips.cameras[\($0)]" }
                    ?? "cameras[\(i)].source"
                let why: String
                switch camera.source {
                case .file(let path, _):
                    let name: String
                    do {
                        name = try codec(path)
                    } catch {
                        throw fail(field, "camera \(camera.id): \(error)")
                    }
                    if name == "h264" { continue }
                    why = "its video is \(name)"
                case .v4l2: why = "it is a V4L2 device"
                case .url: continue // its codec is known once connected
                }
                throw fail(field, "camera \(camera.id) cannot have clips: \(why); clips are stream copies of "
                    + "H.264 files and network streams for now (list the cameras that can in clips.cameras)")
            }
        }
    }
}
