import CSystemd
import Foundation
import Logging

/// m2clipd's logs through swift-log, journald-friendly:
///
/// - `.journal`: native journal entries (sd_journal_sendv(3)): MESSAGE, PRIORITY,
///   SYSLOG_IDENTIFIER=m2clipd, and each metadata key as an upper-case field, so
///   `journalctl -u m2clipd@door CAMERA=door` or `LABEL=…`, `SEQ=…` select on them. An entry the
///   journal refuses goes to stderr as below.
/// - `.stderr(priorityPrefix: true)`: one line per message with sd-daemon(3)'s `<N>` priority
///   prefix, which journald turns into PRIORITY for a service's stderr.
/// - `.stderr(priorityPrefix: false)`: `m2clipd: message camera=door` for a shell;
///   `m2clipd: warning: …` below info's level.
///
/// `LogDestination.automatic` picks the journal when stderr is the service's journal stream.
public struct DaemonLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    let destination: LogDestination
    let identifier: String
    /// Where stderr lines go (tests capture them).
    let write: @Sendable (String) -> Void

    public init(destination: LogDestination, level: Logger.Level = .info, identifier: String = "m2clipd",
                write: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.destination = destination
        self.logLevel = level
        self.identifier = identifier
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let more = event.metadata { all.merge(more) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { (key: $0.key, value: "\($0.value)") }
        let message = event.message.description
        switch destination {
        case .journal:
            if Self.sendToJournal(Self.journalFields(message: message, level: event.level, identifier: identifier,
                                                     metadata: fields)) { return }
            write(Self.stderrLine(message: message, level: event.level, identifier: identifier, metadata: fields,
                                  priorityPrefix: true))
        case .stderr(let priorityPrefix):
            write(Self.stderrLine(message: message, level: event.level, identifier: identifier, metadata: fields,
                                  priorityPrefix: priorityPrefix))
        }
    }

    /// syslog(3) priorities, as journald stores them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// A journal field name from a metadata key: upper case, letters, digits and `_` only, not
    /// starting with `_` or a digit (systemd.journal-fields(7)); `camera` → `CAMERA`.
    static func fieldName(_ key: String) -> String {
        var name = String(key.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
        while name.hasPrefix("_") { name.removeFirst() }
        if name.isEmpty || name.first!.isNumber { name = "M2CLIP_" + name }
        return String(name.prefix(64))
    }

    /// `FIELD=value` pairs of one journal entry.
    static func journalFields(message: String, level: Logger.Level, identifier: String,
                              metadata: [(key: String, value: String)]) -> [String] {
        ["MESSAGE=" + message, "PRIORITY=\(priority(level))", "SYSLOG_IDENTIFIER=" + identifier]
            + metadata.map { fieldName($0.key) + "=" + $0.value }
    }

    static func stderrLine(message: String, level: Logger.Level, identifier: String,
                           metadata: [(key: String, value: String)], priorityPrefix: Bool) -> String {
        let tail = metadata.map { " \($0.key)=\($0.value)" }.joined()
        // One line per entry: journald and `grep` both split on newlines.
        let text = (message + tail).replacingOccurrences(of: "\n", with: " ")
        if priorityPrefix { return "<\(priority(level))>" + text }
        let severity = level >= .warning ? "\(level): " : ""
        return "\(identifier): \(severity)\(text)"
    }

    /// sd_journal_sendv(3); false when the journal is not there or refuses the entry. (libsystemd
    /// drops an entry silently when the socket is missing, so that is checked first.)
    static func sendToJournal(_ fields: [String]) -> Bool {
        guard access("/run/systemd/journal/socket", F_OK) == 0 else { return false }
        let copies = fields.compactMap { strdup($0) }
        defer { copies.forEach { free($0) } }
        var vectors = copies.map { iovec(iov_base: UnsafeMutableRawPointer($0), iov_len: strlen($0)) }
        return sd_journal_sendv(&vectors, Int32(vectors.count)) >= 0
    }
}

/// Where `DaemonLogHandler` writes.
public enum LogDestination: Sendable, Equatable {
    case journal
    case stderr(priorityPrefix: Bool)

    /// The journal when stderr is connected to it — systemd sets `JOURNAL_STREAM` to the
    /// `device:inode` of that stream (systemd.exec(5)); a child whose stderr was redirected
    /// elsewhere keeps the variable but not the stream, so both are compared. Else plain stderr.
    public static func automatic(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 stderrIdentity: (device: UInt64, inode: UInt64)? = standardErrorIdentity()) -> LogDestination {
        guard let stream = environment["JOURNAL_STREAM"], let identity = stderrIdentity else {
            return .stderr(priorityPrefix: false)
        }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]),
              device == identity.device, inode == identity.inode else { return .stderr(priorityPrefix: false) }
        return .journal
    }

    /// fstat(2) of stderr: its device and inode.
    public static func standardErrorIdentity() -> (device: UInt64, inode: UInt64)? {
        var status = stat()
        guard fstat(2, &status) == 0 else { return nil }
        return (UInt64(status.st_dev), UInt64(status.st_ino))
    }
}

extension Logger.Level {
    /// Parses `--log-level` values: trace, debug, info, notice, warning, error, critical.
    public init?(name: String) {
        self.init(rawValue: name.lowercased())
    }
}
