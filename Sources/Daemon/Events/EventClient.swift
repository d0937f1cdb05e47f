import Foundation

/// A subscriber: connects to the daemon's event socket, sends one subscribe line and reads
/// NDJSON lines. Used by `m2clip subscribe` and the tests.
public final class EventClient {
    public let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    private var atEOF = false
    /// A line longer than this is an error (the daemon's lines are far shorter).
    public var maxLineBytes = 1 << 20

    /// - Throws: `SocketError`, e.g. "connect failed: No such file or directory" or
    ///   "Connection refused" with the path.
    public init(path: String) throws {
        self.path = path
        let fd = try SocketSystem.unixSocket(path)
        do { try SocketSystem.connect(fd, path) } catch { SocketSystem.close(fd); throw error }
        self.fd = fd
    }

    deinit { SocketSystem.close(fd) }

    public func send(_ request: SubscribeRequest) throws { try sendRaw(request.line()) }

    /// Sends bytes as they are (tests use this for malformed lines).
    public func sendRaw(_ text: String) throws { try SocketSystem.sendAll(fd, path, Array(text.utf8)) }

    /// The next line without its newline; nil at end of stream, or when `timeout` (seconds)
    /// passes first (then `timedOut` is true).
    public private(set) var timedOut = false

    public func readLine(timeout: Double? = nil) throws -> String? {
        timedOut = false
        let deadline = timeout.map { Date(timeIntervalSinceNow: $0) }
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            if atEOF { return nil }
            if buffer.count > maxLineBytes {
                throw SocketError(kind: .system(errno: EMSGSIZE), call: "recv", path: path,
                                  message: "line longer than \(maxLineBytes) bytes")
            }
            if let deadline {
                let remaining = deadline.timeIntervalSinceNow
                if remaining <= 0 { timedOut = true; return nil }
                guard try SocketSystem.poll(fd, path, events: Int16(POLLIN), timeoutMs: Int32(remaining * 1000) + 1) else { continue }
            }
            let n: Int
            do { n = try SocketSystem.receive(fd, path, into: &chunk) } catch let e as SocketError where e.kind == .closed {
                n = 0
            }
            if n == 0 { atEOF = true } else { buffer += chunk[0..<n] }
        }
    }
}
