import Foundation
import NetworkTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Daemon

/// The unit files under systemd/ and the sd_notify client, against the real tools.
@Suite struct SystemdTests {
    static let units = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("systemd")

    static var systemdAnalyze: String? {
        ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func run(_ tool: String, _ arguments: [String], in directory: URL) throws -> (Int32, String) {
        try runToEnd(tool, arguments, in: directory)
    }

    /// The units with ExecStart pointing at a binary that exists here (verify checks it).
    func stagedUnits() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-units-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for name in ["m2clipd.service", "m2clipd.socket", "m2clipd@.service"] {
            let text = try String(contentsOf: Self.units.appendingPathComponent(name), encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/m2clipd", with: "/bin/true")
            try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        return dir
    }

    @Test(.enabled(if: systemdAnalyze != nil, "systemd-analyze is not installed"))
    func unitsVerify() throws {
        let dir = try stagedUnits()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (status, output) = try run(Self.systemdAnalyze!, ["verify", "--man=no", "m2clipd.service",
                                                             "m2clipd.socket", "m2clipd@front.service"], in: dir)
        #expect(status == 0, "systemd-analyze verify: \(output)")
    }

    /// systemd/m2clipd-network.conf as an installed drop-in: Internet sockets and the host's
    /// network become allowed, nothing else loosens (packet and netlink sockets stay refused).
    @Test(.enabled(if: systemdAnalyze != nil, "systemd-analyze is not installed"))
    func networkDropInOpensOnlyInternetSockets() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-root-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let system = root.appendingPathComponent("etc/systemd/system")
        try FileManager.default.createDirectory(at: system.appendingPathComponent("m2clipd.service.d"),
                                                withIntermediateDirectories: true)
        let unit = try String(contentsOf: Self.units.appendingPathComponent("m2clipd.service"), encoding: .utf8)
        try unit.write(to: system.appendingPathComponent("m2clipd.service"), atomically: true, encoding: .utf8)
        func lines(_ output: String, _ key: String) -> [Substring] {
            output.split(separator: "\n").filter { $0.contains(key) }
        }
        let (_, sandboxed) = try run(Self.systemdAnalyze!, ["security", "--offline=true", "--root=\(root.path)",
                                                            "m2clipd.service"], in: root)
        #expect(lines(sandboxed, "RestrictAddressFamilies=~AF_(INET|INET6)").first?.contains("✓") == true, "\(sandboxed)")

        try FileManager.default.copyItem(at: Self.units.appendingPathComponent("m2clipd-network.conf"),
                                         to: system.appendingPathComponent("m2clipd.service.d/network.conf"))
        let (_, output) = try run(Self.systemdAnalyze!, ["security", "--offline=true", "--root=\(root.path)",
                                                         "m2clipd.service"], in: root)
        #expect(lines(output, "RestrictAddressFamilies=~AF_(INET|INET6)").first?.contains("✗") == true, "\(output)")
        #expect(lines(output, "PrivateNetwork=").first?.contains("✗") == true)
        #expect(lines(output, "RestrictAddressFamilies=~AF_PACKET").first?.contains("✓") == true)
        #expect(lines(output, "RestrictAddressFamilies=~AF_NETLINK").first?.contains("✓") == true)
        let level = lines(output, "Overall exposure level").first
            .flatMap { line in line.split(separator: " ").compactMap { Double($0) }.first }
        let exposure = try #require(level, "no exposure level in: \(output)")
        #expect(exposure <= 2.0, "exposure \(exposure) with the network drop-in")
    }

    /// systemd/m2clipd-metrics.conf as an installed drop-in, alone and with network.conf (MQTT):
    /// the host's network and Internet sockets, IP traffic to loopback only unless network.conf
    /// (read after it) opens the network; exposure stays at most 2.0 either way.
    @Test(.enabled(if: systemdAnalyze != nil, "systemd-analyze is not installed"))
    func metricsDropInOpensLoopbackOnly() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-root-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let system = root.appendingPathComponent("etc/systemd/system")
        let dropIns = system.appendingPathComponent("m2clipd.service.d")
        try FileManager.default.createDirectory(at: dropIns, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.units.appendingPathComponent("m2clipd.service"),
                                         to: system.appendingPathComponent("m2clipd.service"))
        func security() throws -> (output: String, exposure: Double) {
            let (_, output) = try run(Self.systemdAnalyze!, ["security", "--offline=true", "--root=\(root.path)",
                                                             "m2clipd.service"], in: root)
            let level = output.split(separator: "\n").first { $0.contains("Overall exposure level") }
                .flatMap { line in line.split(separator: " ").compactMap { Double($0) }.first }
            return (output, try #require(level, "no exposure level in: \(output)"))
        }
        func line(_ output: String, _ key: String) -> Substring? {
            output.split(separator: "\n").first { $0.contains(key) }
        }

        try FileManager.default.copyItem(at: Self.units.appendingPathComponent("m2clipd-metrics.conf"),
                                         to: dropIns.appendingPathComponent("metrics.conf"))
        let metrics = try security()
        #expect(line(metrics.output, "IPAddressDeny=")?.contains("only localhost entries") == true, "\(metrics.output)")
        #expect(line(metrics.output, "PrivateNetwork=")?.contains("✗") == true)
        #expect(line(metrics.output, "RestrictAddressFamilies=~AF_PACKET")?.contains("✓") == true)
        #expect(metrics.exposure <= 2.0, "exposure \(metrics.exposure) with the metrics drop-in")

        try FileManager.default.copyItem(at: Self.units.appendingPathComponent("m2clipd-network.conf"),
                                         to: dropIns.appendingPathComponent("network.conf"))
        let both = try security()
        #expect(line(both.output, "IPAddressDeny=")?.contains("does not define an IP address allow list") == true,
                "network.conf opens the network: \(both.output)")
        #expect(both.exposure <= 2.0, "exposure \(both.exposure) with the metrics and network drop-ins")
    }

    @Test(.enabled(if: systemdAnalyze != nil, "systemd-analyze is not installed"),
          arguments: ["m2clipd.service", "m2clipd@front.service"])
    func unitsAreHardened(unit: String) throws {
        let dir = try stagedUnits()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, output) = try run(Self.systemdAnalyze!, ["security", "--offline=true", unit], in: dir)
        // "→ Overall exposure level for m2clipd.service: 0.9 SAFE"
        let level = output.split(separator: "\n").first { $0.contains("Overall exposure level") }
            .flatMap { line in line.split(separator: " ").compactMap { Double($0) }.first }
        let exposure = try #require(level, "no exposure level in: \(output)")
        #expect(exposure <= 2.0, "exposure \(exposure) of \(unit)")
    }

    @Test func notifierSendsDatagrams() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-notify-\(getpid()).sock").path
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd); unlink(path) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"])
        #expect(notifier.isActive)
        #expect(notifier.watchdogInterval == 15)
        notifier.ready(status: "2 cameras")
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = recv(fd, &buffer, buffer.count, 0)
        #expect(String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self) == "READY=1\nSTATUS=2 cameras")

        let silent = SystemdNotifier(environment: [:])
        #expect(!silent.isActive && silent.watchdogInterval == nil)
        silent.ready(status: "no-op") // must not crash
    }
}
