import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET ("READY=1", "STATUS=…",
/// "WATCHDOG=1", "STOPPING=1"). Without the variable (not started by systemd) every call is a
/// no-op, so the daemon runs the same from a shell.
public final class SystemdNotifier: @unchecked Sendable {
    private let address: sockaddr_un?
    private let addressLength: socklen_t
    private let fd: Int32
    /// Half of $WATCHDOG_USEC, when systemd asked for keep-alives (for this process).
    public let watchdogInterval: Double?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        var path = environment["NOTIFY_SOCKET"] ?? ""
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        if path.isEmpty || path.utf8.count >= capacity {
            address = nil
            addressLength = 0
            fd = -1
        } else {
            let abstract = path.hasPrefix("@")
            if abstract { path.removeFirst() }
            let bytes = Array(path.utf8)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                let offset = abstract ? 1 : 0 // abstract namespace: a leading NUL
                for (i, b) in bytes.enumerated() { raw[offset + i] = b }
            }
            address = addr
            addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 1 : 0))
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        let pidMatches = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        if let usec = environment["WATCHDOG_USEC"].flatMap(Double.init), usec > 0, pidMatches {
            watchdogInterval = usec / 2e6
        } else {
            watchdogInterval = nil
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// True when started by systemd with a notification socket.
    public var isActive: Bool { address != nil && fd >= 0 }

    /// Sends one notification ("KEY=value" lines); errors are ignored, as sd_notify's callers do.
    public func notify(_ state: String) {
        guard var addr = address, fd >= 0 else { return }
        let bytes = Array(state.utf8)
        _ = withUnsafePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, addressLength) }
            }
        }
    }

    public func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    public func status(_ text: String) { notify("STATUS=\(text)") }
    public func watchdog() { notify("WATCHDOG=1") }
    public func stopping() { notify("STOPPING=1\nSTATUS=stopping") }
}
