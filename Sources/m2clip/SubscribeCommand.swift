import ArgumentParser
import Daemon
import Foundation

struct SubscribeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscribe",
        abstract: "Print m2clipd's action events as they happen.",
        discussion: """
        Connects to the daemon's event socket and prints one line per event: raw NDJSON with         --json (schema: docs/events.schema.json), else a short human line. Exits 0 when the daemon         closes the stream. With --since SEQ --epoch E, the events after SEQ of that daemon run are         replayed first, across restarts when the daemon keeps a history (m2clip events); when         they are no longer held, the daemon answers resync.
        """)

    @Option(help: "The daemon's event socket.")
    var socket = "/run/m2clipd/events.sock"

    @Option(help: "Only this camera (repeatable).")
    var camera: [String] = []

    @Option(help: "Only this label (repeatable).")
    var label: [String] = []

    @Option(help: "Only actions that start with at least this score.")
    var minScore: Float?

    @Option(help: "Replay events after this seq (needs --epoch).")
    var since: UInt64?

    @Option(help: "The daemon run (epoch) --since refers to.")
    var epoch: String?

    @Flag(help: "Print the raw JSON lines.")
    var json = false

    func validate() throws {
        if since != nil && epoch == nil { throw ValidationError("--since needs --epoch (the epoch of the daemon run)") }
        if epoch != nil && since == nil { throw ValidationError("--epoch needs --since SEQ") }
        if let minScore, !minScore.isFinite { throw ValidationError("--min-score must be a finite number") }
    }

    func run() throws {
        let client: EventClient
        do {
            client = try EventClient(path: socket)
        } catch let error as SocketError {
            throw SubscribeError(message: "cannot connect to the m2clipd event socket \(error.description)")
        }
        let resume = since.flatMap { seq in epoch.map { ResumePoint(epoch: $0, seq: seq) } }
        try client.send(SubscribeRequest(cameras: camera.isEmpty ? nil : camera, labels: label.isEmpty ? nil : label,
                                         minScore: minScore, since: resume))
        while let line = try client.readLine() {
            // Unbuffered, so a pipe (| grep) sees each event as it happens.
            FileHandle.standardOutput.write(Data(((json ? line : EventFormatter.human(line)) + "\n").utf8))
        }
    }
}

struct SubscribeError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Short human lines for `m2clip subscribe`.
enum EventFormatter {
    static func human(_ line: String) -> String {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
              let type = o["type"] as? String else { return line }
        let time = (o["ts"] as? Double).map { timeFormatter.string(from: Date(timeIntervalSince1970: $0)) } ?? "--:--:--"
        let seq = (o["seq"] as? Int).map { "#\($0)" } ?? ""
        func str(_ k: String) -> String { o[k].map { "\($0)" } ?? "?" }
        let body: String
        switch type {
        case "hello":
            body = "\(str("daemon")) \(str("version")) model \(str("model")), epoch \(str("epoch")), latest seq \(str("latest_seq"))"
        case "action.start", "action.update", "action.end":
            let score = (o["score"] as? Double).map { String(format: "%.2f", $0) } ?? "?"
            body = "\(str("camera")) \(str("label")) \(score) [\(str("action_id"))]"
        case "camera.status":
            body = "\(str("camera")) \(str("status"))" + ((o["reason"] as? String).map { ": \($0)" } ?? "")
        case "stats":
            let cams = (o["cameras"] as? [[String: Any]] ?? []).map { c in
                "\(c["camera"] ?? "?") \(String(format: "%.1f", c["fps_processed"] as? Double ?? 0)) fps"
            }
            body = cams.joined(separator: ", ")
        case "dropped": body = "\(str("count")) updates dropped (this subscriber fell behind)"
        case "resync": body = "cannot replay: oldest held seq \(str("oldest_seq")), latest \(str("latest_seq"))"
        case "error": body = str("message")
        default: body = line
        }
        return "\(time) \(seq.isEmpty ? "" : seq + " ")\(type) \(body)"
    }

    static let timeFormatter: DateFormatter = {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss.SSS"
        return f
    }()
}
