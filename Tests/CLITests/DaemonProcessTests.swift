import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// m2clipd as users run it: a real daemon process on a looped video file, real subscriber
/// processes on its Unix socket, SIGTERM.
@Suite(.serialized) struct DaemonProcessTests {
    static var directory: URL { CLITests.binary.deletingLastPathComponent() }
    static var daemon: URL { directory.appendingPathComponent("m2clipd") }

    /// A tiny untrained model file and a configuration in a fresh directory.
    func setUp() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clipd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        _ = try CLITests.makeTinyModel(in: dir)
        let video = CLITests.fixtures.appendingPathComponent("video/phone_h264_rot90.mp4").path
        try """
        model: tiny.m2c
        socket:
          path: \(dir.path)/events.sock
        stats_interval_s: 1
        cameras:
          - id: front
            source: {file: \(video), loop: true}
            sample_fps: 8
            stride: 2
            head: zero-shot
            thresholds: {start: 0.3, end: 0.2}
        """.write(to: dir.appendingPathComponent("m2clipd.yaml"), atomically: true, encoding: .utf8)
        return dir
    }

    func waitFor(_ path: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: path) { return true }
            usleep(50_000)
        }
        return false
    }

    /// m2clipd on the directory's configuration, under `wrapper` (e.g. prlimit) when given,
    /// once its socket exists.
    func startDaemon(in dir: URL, under wrapper: [String] = []) throws -> (Process, Pipe, String) {
        let daemon = CLITests.process(Self.daemon, ["--config", dir.appendingPathComponent("m2clipd.yaml").path], under: wrapper)
        let stderr = Pipe()
        daemon.standardError = stderr
        try daemon.run()
        let socket = dir.appendingPathComponent("events.sock").path
        #expect(waitFor(socket, seconds: 20), "no socket at \(socket)")
        return (daemon, stderr, socket)
    }

    /// `m2clip subscribe --json` on the socket.
    func startSubscriber(_ socket: String) throws -> (Process, Pipe) {
        let subscriber = Process()
        subscriber.executableURL = CLITests.binary
        subscriber.arguments = ["subscribe", "--socket", socket, "--json"]
        let out = Pipe()
        subscriber.standardOutput = out
        try subscriber.run()
        return (subscriber, out)
    }

    @Test func eventsReachSubscribersAndSIGTERMDrains() throws {
        let dir = try setUp()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (daemon, daemonErr, socket) = try startDaemon(in: dir)

        // A subscriber that connects and never reads: it must not hold up the other one.
        let stuck = Process()
        stuck.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        stuck.arguments = ["python3", "-c", "import socket,time; s=socket.socket(socket.AF_UNIX); s.connect('\(socket)'); time.sleep(30)"]
        try? stuck.run()

        let (subscriber, out) = try startSubscriber(socket)
        sleep(4)
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        subscriber.waitUntilExit()
        if stuck.isRunning { stuck.terminate() }

        let daemonLog = String(decoding: daemonErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(daemon.terminationStatus == 0, "\(daemonLog)")
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let types = lines.compactMap { $0["type"] as? String }
        #expect(types.first == "hello")
        #expect(types.contains("stats"), "\(types)")
        let starts = types.filter { $0 == "action.start" }.count, ends = types.filter { $0 == "action.end" }.count
        #expect(starts >= 1 && starts == ends, "starts \(starts), ends \(ends): every open action ends on SIGTERM")
        #expect(types.last == "stats" || types.last == "camera.status" || types.last == "action.end", "\(types.suffix(3))")
        let seqs = lines.compactMap { $0["seq"] as? Int }
        #expect(seqs == seqs.sorted() && Set(seqs).count == seqs.count, "seq not increasing")
        #expect(!FileManager.default.fileExists(atPath: socket), "socket left behind")
    }

    @Test func sighupReloadsCamerasAndKeepsSubscribers() throws {
        let dir = try setUp()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (daemon, daemonErr, socket) = try startDaemon(in: dir)
        let (subscriber, out) = try startSubscriber(socket)
        sleep(2)
        // Rename the camera: the old one goes offline, the new one comes online, same connection.
        let config = dir.appendingPathComponent("m2clipd.yaml")
        let text = try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: "id: front", with: "id: back")
        try text.write(to: config, atomically: true, encoding: .utf8)
        kill(daemon.processIdentifier, SIGHUP)
        sleep(3)
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        subscriber.waitUntilExit()
        let log = String(decoding: daemonErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(daemon.terminationStatus == 0, "\(log)")
        #expect(log.contains("reloaded"), "\(log)")
        let statuses = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { ($0["type"] as? String) == "camera.status" }
            .map { "\($0["camera"] ?? "?") \($0["status"] ?? "?")" }
        #expect(statuses.contains("front offline") && statuses.contains("back online"), "\(statuses)")
    }

    @Test func badConfigurationIsNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clipd-bad-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("bad.yaml")
        try "model: missing.m2c\nsocket: {path: /nonexistent-dir/x.sock}\ncameras: []\n".write(to: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = Self.daemon
        process.arguments = ["--check-config", config.path]
        let err = Pipe()
        process.standardError = err
        try process.run()
        process.waitUntilExit()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(message.contains(config.path), "\(message)")

    }

    /// Runs `m2clipd --check-config` on `yaml` (written next to an empty model file), through
    /// `prefix` (e.g. unshare); the exit status and standard error.
    static func checkConfig(_ yaml: String, prefix: [String] = []) throws -> (status: Int32, stderr: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clipd-check-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(FileManager.default.createFile(atPath: dir.appendingPathComponent("model.m2c").path, contents: Data()))
        let config = dir.appendingPathComponent("m2clipd.yaml")
        try ("model: model.m2c\nsocket: {path: \(dir.path)/x.sock}\ncameras:\n" + yaml)
            .write(to: config, atomically: true, encoding: .utf8)
        let check = Process()
        check.executableURL = URL(fileURLWithPath: prefix.isEmpty ? daemon.path : "/usr/bin/env")
        check.arguments = (prefix.isEmpty ? [] : prefix + [daemon.path]) + ["--check-config", config.path]
        let err = Pipe()
        check.standardError = err
        try check.run()
        check.waitUntilExit()
        return (check.terminationStatus, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    @Test func checkConfigValidatesCameraSources() throws {
        let v4l2 = try Self.checkConfig("  - id: cam\n    source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30, format: YUYV}\n")
        #expect(v4l2.status == 0, "\(v4l2.stderr)")
        let format = try Self.checkConfig("  - id: cam\n    source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30, format: H264}\n")
        #expect(format.status != 0)
        #expect(format.stderr.contains("cameras[0].source.format: \"H264\" is not one of YUYV, NV12, MJPG"), "\(format.stderr)")
        let url = try Self.checkConfig("  - id: cam\n    source: {url: \"rtsp://admin:hunter2@camera.local:99999/s\"}\n")
        #expect(url.status != 0)
        #expect(url.stderr.contains("cameras[0].source.url:") && url.stderr.contains("port"), "\(url.stderr)")
        #expect(!url.stderr.contains("hunter2"), "the password never shows")
    }

    /// The shipped units keep m2clipd off the network; a network camera must be refused at
    /// --check-config with the drop-in to install, not become a camera that never connects.
    /// `unshare -n` gives the same sandbox as PrivateNetwork=yes (root only).
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")))
    func networkCameraWithoutNetworkIsRefused() throws {
        let yaml = "  - id: cam\n    source: {url: \"rtsp://10.0.0.5/stream1\"}\n"
        let open = try Self.checkConfig(yaml)
        #expect(open.status == 0, "\(open.stderr)")
        let sandboxed = try Self.checkConfig(yaml, prefix: ["unshare", "-n"])
        #expect(sandboxed.status != 0)
        #expect(sandboxed.stderr.contains("cameras[0].source.url: a network stream, but this process has no network interface but loopback"), "\(sandboxed.stderr)")
        #expect(sandboxed.stderr.contains("systemd/m2clipd-network.conf"))
        // A stream on this host itself needs no network.
        let local = try Self.checkConfig("  - id: cam\n    source: {url: \"http://127.0.0.1:8080/cam.mjpeg\"}\n", prefix: ["unshare", "-n"])
        #expect(local.status == 0, "\(local.stderr)")
    }
}
