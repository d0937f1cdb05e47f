import Foundation

extension DaemonConfiguration {
    /// The optional `history:` section. Whenever a state directory is known, every event but
    /// `stats` is kept in SQLite at `<state_dir>/events.sqlite` (see `EventHistory`), so a
    /// subscriber's `since` replays across daemon restarts and `m2clip events` can query it.
    ///
    ///     history:
    ///       enabled: true        # default: true when there is a state_dir
    ///       retention_days: 30   # older events are deleted, oldest first
    ///       max_mb: 256          # and the oldest go while the events take more than this
    public struct History: Codable, Sendable, Equatable {
        /// nil: on when a state directory is known.
        public var enabled: Bool?
        public var retentionDays: Double
        public var maxMegabytes: Double

        enum CodingKeys: String, CodingKey, CaseIterable {
            case enabled
            case retentionDays = "retention_days", maxMegabytes = "max_mb"
        }

        public init(enabled: Bool? = nil, retentionDays: Double = 30, maxMegabytes: Double = 256) {
            self.enabled = enabled
            self.retentionDays = retentionDays
            self.maxMegabytes = maxMegabytes
        }

        public var retention: EventStore.Retention {
            EventStore.Retention(maxAgeSeconds: retentionDays * 86_400, maxBytes: Int64(maxMegabytes * 1_048_576))
        }
    }

    /// The history database, nil when history is off or no state directory is known.
    public var historyDatabase: String? {
        guard history.enabled ?? true, let stateDirectory else { return nil }
        return URL(fileURLWithPath: stateDirectory).appendingPathComponent(EventStore.fileName).path
    }
}

extension DaemonConfiguration.History {
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled)
        retentionDays = try c.decodeIfPresent(Double.self, forKey: .retentionDays) ?? 30
        maxMegabytes = try c.decodeIfPresent(Double.self, forKey: .maxMegabytes) ?? 256
    }

    /// `fail(field, message)` builds the error; `stateDirectory` is the resolved one, if any.
    func validate(stateDirectory: String?, fail: (String, String) -> ConfigurationError) throws {
        if enabled == true, stateDirectory == nil {
            throw fail("history.enabled", "needs a state directory (state_dir, or systemd's StateDirectory=)")
        }
        guard retentionDays > 0, retentionDays.isFinite else {
            throw fail("history.retention_days", "must be positive (got \(retentionDays))")
        }
        guard maxMegabytes >= 1, maxMegabytes.isFinite else {
            throw fail("history.max_mb", "must be at least 1 (got \(maxMegabytes))")
        }
    }
}
