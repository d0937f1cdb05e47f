#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A failed socket call: which call, on which path, and the errno it returned.
public struct SocketError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Equatable, Sendable {
        case missingDirectory
        case unwritableDirectory
        case pathTooLong(limit: Int)
        case notASocket
        case addressInUse
        case timedOut
        case closed
        case system(errno: Int32)
    }
    public var kind: Kind
    public var call: String
    public var path: String
    public var message: String

    public var description: String { "\(path): \(message)" }
}

/// Every system call of the event socket code, each retried on EINTR and turned into a
/// `SocketError` that names the call, the path and the errno.
enum SocketSystem {
    /// `sizeof(sockaddr_un.sun_path)` less the terminating NUL.
    static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    static func error(_ call: String, _ path: String, _ code: Int32 = errno) -> SocketError {
        let kind: SocketError.Kind = code == EAGAIN || code == EWOULDBLOCK ? .timedOut
            : code == EPIPE || code == ECONNRESET ? .closed
            : code == EADDRINUSE ? .addressInUse : .system(errno: code)
        return SocketError(kind: kind, call: call, path: path,
                           message: "\(call) failed: \(String(cString: strerror(code))) (errno \(code))")
    }

    /// Retries `body` while it fails with EINTR.
    @discardableResult
    static func retrying<T: BinaryInteger>(_ call: String, _ path: String, _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            if errno == EINTR { continue }
            throw error(call, path)
        }
    }

    static func address(_ path: String) throws -> sockaddr_un {
        let bytes = Array(path.utf8)
        guard bytes.count <= maxPathBytes else {
            throw SocketError(kind: .pathTooLong(limit: maxPathBytes), call: "bind", path: path,
                              message: "socket path is \(bytes.count) bytes, the limit (sun_path) is \(maxPathBytes)")
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

    /// `socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`.
    static func unixSocket(_ path: String) throws -> Int32 {
        try retrying("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    static func bind(_ fd: Int32, _ path: String) throws {
        var addr = try address(path)
        try retrying("bind", path) {
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
    }

    static func connect(_ fd: Int32, _ path: String) throws {
        var addr = try address(path)
        try retrying("connect", path) {
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
    }

    static func listen(_ fd: Int32, _ path: String, backlog: Int32 = 64) throws {
        try retrying("listen", path) { Glibc.listen(fd, backlog) }
    }

    /// `accept` then `fcntl(FD_CLOEXEC)` (Glibc's module does not export accept4); nil when
    /// nothing is pending (the listener is non-blocking). The new fd is blocking.
    static func accept(_ fd: Int32, _ path: String) throws -> Int32? {
        while true {
            let conn = Glibc.accept(fd, nil, nil)
            if conn >= 0 {
                _ = fcntl(conn, F_SETFD, FD_CLOEXEC)
                let flags = fcntl(conn, F_GETFL)
                if flags >= 0 { _ = fcntl(conn, F_SETFL, flags & ~O_NONBLOCK) }
                return conn
            }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED { return nil }
            throw error("accept", path)
        }
    }

    static func setNonBlocking(_ fd: Int32, _ path: String) throws {
        let flags = try retrying("fcntl(F_GETFL)", path) { fcntl(fd, F_GETFL) }
        try retrying("fcntl(F_SETFL)", path) { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// `setsockopt(SO_SNDTIMEO)`: a blocking send that cannot finish in `seconds` fails with
    /// EAGAIN, which is how a subscriber that stopped reading is found.
    static func setSendTimeout(_ fd: Int32, _ path: String, seconds: Double) throws {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        try retrying("setsockopt(SO_SNDTIMEO)", path) {
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    /// `poll` for one fd; true when `events` are ready within `timeoutMs` (negative: wait forever).
    static func poll(_ fd: Int32, _ path: String, events: Int16, timeoutMs: Int32) throws -> Bool {
        var pfd = pollfd(fd: fd, events: events, revents: 0)
        let n = try retrying("poll", path) { Glibc.poll(&pfd, 1, timeoutMs) }
        return n > 0
    }

    /// `send(MSG_NOSIGNAL)` of all of `bytes`: a closed peer is an error, never SIGPIPE.
    static func sendAll(_ fd: Int32, _ path: String, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = try bytes.withUnsafeBytes { raw in
                try retrying("send", path) {
                    send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                }
            }
            offset += n
        }
    }

    /// `recv` into `buffer`; 0 is end of stream.
    static func receive(_ fd: Int32, _ path: String, into buffer: inout [UInt8]) throws -> Int {
        try buffer.withUnsafeMutableBytes { raw in
            try retrying("recv", path) { recv(fd, raw.baseAddress!, raw.count, 0) }
        }
    }

    /// `shutdown(SHUT_RDWR)`: wakes a thread blocked in send or recv on `fd`.
    static func shutdownBoth(_ fd: Int32) { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    /// `close`; not retried on EINTR (Linux releases the fd either way).
    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    static func unlink(_ path: String) { _ = Glibc.unlink(path) }

    static func chmod(_ path: String, mode: mode_t) throws {
        try retrying("chmod", path) { Glibc.chmod(path, mode) }
    }

    enum FileKind { case missing, socket, other }

    /// `lstat`: what, if anything, is at `path`.
    static func fileKind(_ path: String) -> FileKind {
        var st = stat()
        if lstat(path, &st) != 0 { return .missing }
        return (st.st_mode & S_IFMT) == S_IFSOCK ? .socket : .other
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isWritableDirectory(_ path: String) -> Bool { access(path, W_OK | X_OK) == 0 }

    /// `fstat`: is `fd` an open socket?
    static func isSocket(_ fd: Int32) -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
    }
}
