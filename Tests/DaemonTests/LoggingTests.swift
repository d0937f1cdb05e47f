import Foundation
import Logging
import Testing
@testable import Daemon
#if canImport(Glibc)
import Glibc
#endif

/// m2clipd's swift-log handler: the stderr formats, the journal's field names, when the journal
/// is chosen, and real entries read from a journal socket this test binds.
@Suite struct LoggingTests {
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [String] = []
        func append(_ line: String) { lock.withLock { list.append(line) } }
        var all: [String] { lock.withLock { list } }
    }

    func logger(_ destination: LogDestination, _ lines: Lines, level: Logger.Level = .info) -> Logger {
        Logger(label: "m2clipd") { _ in DaemonLogHandler(destination: destination, level: level, write: lines.append) }
    }

    @Test func stderrLinesForAShellAndForSystemd() {
        let lines = Lines()
        var shell = logger(.stderr(priorityPrefix: false), lines)
        shell[metadataKey: "camera"] = "door"
        shell.info("ready")
        shell.warning("stalled\nfor 5 s", metadata: ["seq": "42"])
        shell.debug("not at info level")
        var service = logger(.stderr(priorityPrefix: true), lines, level: .debug)
        service.error("cannot open /dev/video0", metadata: ["camera": "yard"])
        service.debug("window", metadata: ["label": "waving"])
        #expect(lines.all == [
            "m2clipd: ready camera=door",
            "m2clipd: warning: stalled for 5 s camera=door seq=42",
            "<3>cannot open /dev/video0 camera=yard",
            "<7>window label=waving",
        ])
    }

    @Test func journalFieldNames() {
        #expect(DaemonLogHandler.fieldName("camera") == "CAMERA")
        #expect(DaemonLogHandler.fieldName("action-id") == "ACTION_ID")
        #expect(DaemonLogHandler.fieldName("_seq") == "SEQ")
        #expect(DaemonLogHandler.fieldName("2fa") == "M2CLIP_2FA")
        let fields = DaemonLogHandler.journalFields(message: "action started", level: .notice, identifier: "m2clipd",
                                                    metadata: [("camera", "door"), ("label", "opening door")])
        #expect(fields == ["MESSAGE=action started", "PRIORITY=5", "SYSLOG_IDENTIFIER=m2clipd",
                           "CAMERA=door", "LABEL=opening door"])
    }

    @Test func theJournalOnlyWhenStderrIsItsStream() {
        let identity: (device: UInt64, inode: UInt64) = (64769, 123456)
        #expect(LogDestination.automatic(environment: ["JOURNAL_STREAM": "64769:123456"], stderrIdentity: identity) == .journal)
        #expect(LogDestination.automatic(environment: ["JOURNAL_STREAM": "64769:999"], stderrIdentity: identity)
            == .stderr(priorityPrefix: false), "stderr redirected elsewhere")
        #expect(LogDestination.automatic(environment: [:], stderrIdentity: identity) == .stderr(priorityPrefix: false))
        #expect(LogDestination.automatic(environment: ["JOURNAL_STREAM": "junk"], stderrIdentity: identity)
            == .stderr(priorityPrefix: false))
    }

    /// libsystemd sends to /run/systemd/journal/socket: where no journald runs (a container, CI),
    /// the test binds that socket itself and reads the datagram libsystemd wrote.
    @Test(.enabled(if: getuid() == 0 && !FileManager.default.fileExists(atPath: "/run/systemd/journal/socket"),
                   "needs root, and no journald on this machine"))
    func journalEntriesCarryTheFields() throws {
        let directory = "/run/systemd/journal", path = directory + "/socket"
        let created = !FileManager.default.fileExists(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer {
            unlink(path)
            if created { try? FileManager.default.removeItem(atPath: directory) }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0, "bind \(path): errno \(errno)")

        let lines = Lines()
        var log = logger(.journal, lines)
        log[metadataKey: "camera"] = "door"
        log.warning("stalled", metadata: ["seq": "42"])
        var buffer = [UInt8](repeating: 0, count: 65536)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let n = recv(fd, &buffer, buffer.count, 0)
        try #require(n > 0, "no journal datagram (errno \(errno))")
        let entry = String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(entry.contains("MESSAGE=stalled"), "\(entry)")
        #expect(entry.contains("PRIORITY=4") && entry.contains("SYSLOG_IDENTIFIER=m2clipd"), "\(entry)")
        #expect(entry.contains("CAMERA=door") && entry.contains("SEQ=42"), "\(entry)")
        #expect(lines.all.isEmpty, "the journal took it: nothing on stderr")

        // The journal gone: the entry falls back to stderr with its priority prefix.
        unlink(path)
        log.error("cannot open")
        #expect(lines.all == ["<3>cannot open camera=door"])
    }
}
