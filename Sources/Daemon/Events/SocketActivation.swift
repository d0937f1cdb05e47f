import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// systemd socket activation (sd_listen_fds(3)): the first passed fd is 3.
public enum SocketActivation {
    /// The listening socket systemd passed to this process, or nil when `LISTEN_PID` is not this
    /// process, `LISTEN_FDS` is not at least 1, or fd 3 is not a socket.
    public static func listeningFD(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int32? {
        guard let pid = environment["LISTEN_PID"].flatMap({ Int32($0) }), pid == getpid(),
              let count = environment["LISTEN_FDS"].flatMap({ Int($0) }), count >= 1,
              SocketSystem.isSocket(3) else { return nil }
        return 3
    }
}
