import Foundation

/// What `m2clip events` needs besides the store: which database, time arguments, the table.
public enum HistoryReport {
    /// The database of m2clipd.service (StateDirectory=m2clipd).
    public static let defaultDatabase = "/var/lib/m2clipd/" + EventStore.fileName

    /// The database a configuration file, a state directory or a path names (at most one).
    public static func databasePath(config: String?, stateDirectory: String?, database: String?) throws -> String {
        if let database { return database }
        if let stateDirectory { return URL(fileURLWithPath: stateDirectory).appendingPathComponent(EventStore.fileName).path }
        guard let config else { return defaultDatabase }
        let configuration = try DaemonConfiguration.load(path: config)
        guard let path = configuration.historyDatabase else {
            throw ConfigurationError(file: config, field: "history", configuration.stateDirectory == nil
                ? "no state_dir in the file (under systemd it comes from StateDirectory=; give --state-dir)"
                : "history is off (history.enabled: false)")
        }
        return path
    }

    /// `text` as a time: relative to `now` (`90s`, `30m`, `2h`, `7d` ago) or ISO-8601
    /// (`2026-12-07T10:00:00Z`, fractional seconds and offsets allowed; a date alone is UTC
    /// midnight). nil when it is neither.
    public static func parseTime(_ text: String, now: Date = Date()) -> Date? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        if let unit = text.last.flatMap({ units[$0] }), let amount = Double(text.dropLast()), amount >= 0, amount.isFinite {
            return now.addingTimeInterval(-amount * unit)
        }
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds],
                                                      [.withInternetDateTime], [.withFullDate]] {
            let f = ISO8601DateFormatter()
            f.formatOptions = options
            if let date = f.date(from: text) { return date }
        }
        return nil
    }

    /// One row per event: time (UTC), run, seq, type, camera, label, score.
    public static func table(_ events: [EventStore.Event]) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let rows = [["TIME", "RUN", "SEQ", "TYPE", "CAMERA", "LABEL", "SCORE"]] + events.map { e in
            [f.string(from: Date(timeIntervalSince1970: e.time)), String(e.epoch.prefix(8)), "\(e.seq)", e.type,
             e.camera ?? "-", e.label ?? "-", e.score.map { String(format: "%.2f", $0) } ?? "-"]
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n") + "\n"
    }
}
