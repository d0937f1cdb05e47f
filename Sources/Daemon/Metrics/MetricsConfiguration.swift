import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension DaemonConfiguration {
    /// The optional `metrics:` section: Prometheus text format on `http://<listen>/metrics`.
    /// Without it m2clipd opens no port.
    ///
    ///     metrics:
    ///       listen: "127.0.0.1:9464"   # default; IPv6 as "[::1]:9464"
    ///       allow_remote: false        # true: a non-loopback address (0.0.0.0, a LAN address)
    ///
    /// Loopback by default: the endpoint has no authentication, and the systemd drop-in
    /// (systemd/m2clipd-metrics.conf) lets the daemon's sockets reach localhost only. A Prometheus
    /// on another host scrapes through a reverse proxy, or with `allow_remote: true` and the
    /// drop-in's IPAddressAllow= widened to that host.
    public struct Metrics: Codable, Sendable, Equatable {
        public static let defaultListen = "127.0.0.1:9464"

        /// `host:port` as written.
        public var listen: String
        public var allowRemote: Bool

        enum CodingKeys: String, CodingKey, CaseIterable {
            case listen
            case allowRemote = "allow_remote"
        }

        public init(listen: String = Metrics.defaultListen, allowRemote: Bool = false) {
            self.listen = listen
            self.allowRemote = allowRemote
        }

        /// `listen` split into an IP literal (no brackets) and a port; nil when it is not
        /// `IPv4:port`, `[IPv6]:port` or `localhost:port`.
        public var address: (host: String, port: Int)? {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
                return nil
            }
            var host = String(listen[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") {
                host = String(host.dropFirst().dropLast())
                guard Self.family(of: host) == AF_INET6 else { return nil }
            } else if host == "localhost" {
                host = "127.0.0.1"
            } else {
                guard Self.family(of: host) == AF_INET else { return nil }
            }
            return (host, port)
        }

        /// AF_INET or AF_INET6 for an IP literal (inet_pton), nil for anything else.
        static func family(of host: String) -> Int32? {
            var buffer = in6_addr()
            for family in [AF_INET, AF_INET6] where inet_pton(family, host, &buffer) == 1 { return family }
            return nil
        }
    }
}

extension DaemonConfiguration.Metrics {
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        listen = try c.decodeIfPresent(String.self, forKey: .listen) ?? Self.defaultListen
        allowRemote = try c.decodeIfPresent(Bool.self, forKey: .allowRemote) ?? false
    }

    /// `fail(field, message)` builds the error.
    func validate(fail: (String, String) -> ConfigurationError) throws {
        guard let (host, port) = address else {
            throw fail("metrics.listen", "\"\(listen)\" is not an address like \"127.0.0.1:9464\" or \"[::1]:9464\"")
        }
        guard (1...65535).contains(port) else { throw fail("metrics.listen", "port must be in 1...65535 (got \(port))") }
        guard allowRemote || NetworkAccess.isLoopback(host) else {
            throw fail("metrics.listen", "\(host) is not a loopback address; the endpoint has no authentication, "
                + "so serving it to other hosts needs allow_remote: true")
        }
    }
}
