#if canImport(Glibc)
import Glibc
#endif

/// Whether this process can reach cameras on the network, or serve a port the host sees. The
/// shipped units sandbox m2clipd off the network (PrivateNetwork=yes, RestrictAddressFamilies=
/// AF_UNIX) because most hosts only have V4L2 and file cameras; a configuration with a network
/// stream needs the systemd/m2clipd-network.conf drop-in, one with metrics
/// systemd/m2clipd-metrics.conf, and this finds out at --check-config time instead of as a
/// camera that never comes online or a port nobody can scrape.
enum NetworkAccess {
    /// Why `host` cannot be reached from here, or nil when nothing stands in the way.
    static func problem(reaching host: String) -> String? {
        if let problem = socketProblem() { return problem }
        return isLoopback(host) ? nil : namespaceProblem()
    }

    /// Why a port opened here would not be the host's, or nil. Even a loopback port: in a
    /// private network namespace its loopback is not the host's.
    static func problemServing() -> String? {
        socketProblem() ?? namespaceProblem()
    }

    private static func socketProblem() -> String? {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        if fd < 0 {
            return "this process may not open network sockets (\(String(cString: strerror(errno))); "
                + "systemd's RestrictAddressFamilies)"
        }
        close(fd)
        return nil
    }

    private static func namespaceProblem() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var cursor = list
        while let entry = cursor {
            if entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0 { return nil }
            cursor = entry.pointee.ifa_next
        }
        return "this process has no network interface but loopback (a private network namespace; "
            + "systemd's PrivateNetwork)"
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "::1"
    }
}
