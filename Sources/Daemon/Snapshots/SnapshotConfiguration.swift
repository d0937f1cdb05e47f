import Foundation

extension DaemonConfiguration {
    /// The optional `snapshots:` section: a JPEG of each action's best window frame under
    /// `<state_dir>/snapshots`, named in the action events and, with MQTT, published to
    /// `<prefix>/<camera>/<label>/snapshot`. Without the section no snapshot is written (the
    /// daemon does not fill a disk nobody asked it to); with it, `state_dir` is required.
    ///
    ///     snapshots:
    ///       enabled: true            # default true (false keeps the section but writes nothing)
    ///       quality: 85              # JPEG quality 1...100
    ///       max_width: 1280          # optional: wider frames are scaled down (aspect kept)
    ///       retention_days: 7        # files older than this are deleted
    ///       max_mb: 1024             # and the oldest go first while all of them exceed this
    public struct Snapshots: Codable, Sendable, Equatable {
        public var enabled: Bool
        public var quality: Int
        public var maxWidth: Int?
        public var retentionDays: Double
        public var maxMB: Double

        enum CodingKeys: String, CodingKey, CaseIterable {
            case enabled, quality, maxWidth = "max_width", retentionDays = "retention_days", maxMB = "max_mb"
        }

        public init(enabled: Bool = true, quality: Int = 85, maxWidth: Int? = nil, retentionDays: Double = 7,
                    maxMB: Double = 1024) {
            self.enabled = enabled
            self.quality = quality
            self.maxWidth = maxWidth
            self.retentionDays = retentionDays
            self.maxMB = maxMB
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? enabled
            quality = try c.decodeIfPresent(Int.self, forKey: .quality) ?? quality
            maxWidth = try c.decodeIfPresent(Int.self, forKey: .maxWidth)
            retentionDays = try c.decodeIfPresent(Double.self, forKey: .retentionDays) ?? retentionDays
            maxMB = try c.decodeIfPresent(Double.self, forKey: .maxMB) ?? maxMB
        }

        /// The byte budget of all snapshots together.
        public var maxBytes: Int64 { Int64(maxMB * 1024 * 1024) }

        /// Checks each value; `fail(field, message)` builds the error.
        func validate(stateDirectory: String?, fail: (String, String) -> ConfigurationError) throws {
            guard (1...100).contains(quality) else { throw fail("snapshots.quality", "must be in 1...100 (got \(quality))") }
            if let maxWidth, maxWidth < 16 {
                throw fail("snapshots.max_width", "must be at least 16 (got \(maxWidth))")
            }
            guard retentionDays > 0, retentionDays.isFinite else {
                throw fail("snapshots.retention_days", "must be positive (got \(retentionDays))")
            }
            guard maxMB > 0, maxMB.isFinite else { throw fail("snapshots.max_mb", "must be positive (got \(maxMB))") }
            if enabled, stateDirectory == nil {
                throw fail("snapshots", "needs state_dir (or systemd's StateDirectory=) to write them under")
            }
        }
    }
}
