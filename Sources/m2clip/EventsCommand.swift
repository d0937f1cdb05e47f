import ArgumentParser
import Daemon
import Foundation

struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Query m2clipd's event history.",
        discussion: """
        Reads the history database (events.sqlite in the daemon's state directory) read-only, so \
        it works while the daemon runs. Prints a table, or with --json the stored NDJSON lines as \
        subscribers got them. TIME is ISO-8601 (2026-12-07T10:00:00Z, or a date) or an age: \
        90s, 30m, 2h, 7d. Without --config, --state-dir or --db: \(HistoryReport.defaultDatabase).
        """)

    @Option(help: "The daemon's YAML configuration (its state_dir holds the history).")
    var config: String?

    @Option(help: "The daemon's state directory.")
    var stateDir: String?

    @Option(help: "The history database file.")
    var db: String?

    @Option(help: "Only this camera (repeatable).")
    var camera: [String] = []

    @Option(help: "Only this label (repeatable).")
    var label: [String] = []

    @Option(help: "Only events at or after TIME.")
    var since: String?

    @Option(help: "Only events at or before TIME.")
    var until: String?

    @Option(help: "At most the newest N events (0: all).")
    var limit = 100

    @Flag(help: "Print the stored JSON lines.")
    var json = false

    func validate() throws {
        if [config, stateDir, db].compactMap({ $0 }).count > 1 {
            throw ValidationError("give one of --config, --state-dir, --db")
        }
        for (name, value) in [("--since", since), ("--until", until)] {
            if let value, HistoryReport.parseTime(value) == nil {
                throw ValidationError("\(name) \(value): not an ISO-8601 time or an age like 30m, 2h, 7d")
            }
        }
        if limit < 0 { throw ValidationError("--limit must not be negative, got \(limit)") }
    }

    func run() throws {
        let path = try HistoryReport.databasePath(config: config, stateDirectory: stateDir, database: db)
        let store = try EventStore.openReadOnly(path: path)
        defer { store.close() }
        let events = try store.events(EventStore.Query(
            cameras: camera, labels: label, since: since.flatMap { HistoryReport.parseTime($0) },
            until: until.flatMap { HistoryReport.parseTime($0) }, limit: limit == 0 ? nil : limit))
        let text = json ? events.map(\.line).joined() : HistoryReport.table(events)
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
