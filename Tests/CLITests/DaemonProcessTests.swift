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

    /// m2clipd with `sections` (default `snapshots:`) as a process, through `prefix` (prlimit) when given: the
    /// subscriber's JSON lines, the daemon's exit status and log, after SIGTERM once
    /// `done(subscriber output, daemon log)` holds (or 60 s pass: a loaded machine is slow to
    /// load the model and score the first windows), then one more second.
    func runWithSnapshots(in dir: URL, prefix: [String] = [], sections: String = "snapshots: {quality: 85}\n",
                          until done: @escaping (String, String) -> Bool) throws
        -> (lines: [[String: Any]], status: Int32, log: String) {
        let config = dir.appendingPathComponent("m2clipd.yaml")
        try (String(contentsOf: config, encoding: .utf8) + "\nstate_dir: \(dir.path)/state\n" + sections)
            .write(to: config, atomically: true, encoding: .utf8)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: prefix.isEmpty ? Self.daemon.path : "/usr/bin/env")
        daemon.arguments = (prefix.isEmpty ? [] : prefix + [Self.daemon.path]) + ["--config", config.path]
        let stderr = Pipe(), log = Collected()
        stderr.fileHandleForReading.readabilityHandler = { log.add($0.availableData) }
        daemon.standardError = stderr
        try daemon.run()
        let socket = dir.appendingPathComponent("events.sock").path
        #expect(waitFor(socket, seconds: 20), "no socket at \(socket)")
        let (subscriber, out) = try startSubscriber(socket)
        let events = Collected()
        out.fileHandleForReading.readabilityHandler = { events.add($0.availableData) }
        let deadline = Date().addingTimeInterval(60)
        while !done(events.text, log.text) && Date() < deadline { usleep(100_000) }
        sleep(1)
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        subscriber.waitUntilExit()
        // The pipes' last bytes: stop the handlers, then read what is left.
        out.fileHandleForReading.readabilityHandler = nil
        stderr.fileHandleForReading.readabilityHandler = nil
        events.add(out.fileHandleForReading.readDataToEndOfFile())
        log.add(stderr.fileHandleForReading.readDataToEndOfFile())
        let lines = events.text.split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        return (lines, daemon.terminationStatus, log.text)
    }

    /// Bytes a pipe's handler collects.
    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()
        func add(_ more: Data) { lock.withLock { data.append(more) } }
        var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
    }

    /// Every file under `directory`, relative.
    static func files(under directory: String) -> [String] {
        (FileManager.default.enumerator(atPath: directory)?.allObjects as? [String] ?? []).filter { path in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: directory + "/" + path, isDirectory: &isDirectory) && !isDirectory.boolValue
        }
    }

    /// Action events name JPEG files under <state_dir>/snapshots/front/<day>/, and they are
    /// there, whole, after SIGTERM; nothing else is (no temporary file).
    @Test func snapshotsAreWrittenAndNamedInTheEvents() throws {
        let dir = try setUp()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Until an event names a snapshot (the looped clip's actions end at SIGTERM).
        let run = try runWithSnapshots(in: dir) { events, _ in events.contains("\"snapshot\":{") }
        #expect(run.status == 0, "\(run.log)")
        let ends = run.lines.filter { $0["type"] as? String == "action.end" }
        #expect(!ends.isEmpty)
        let named = Set(run.lines.compactMap { ($0["snapshot"] as? [String: Any])?["path"] as? String })
        #expect(!named.isEmpty, "no event names a snapshot")
        let root = dir.appendingPathComponent("state/snapshots").path
        for path in named {
            #expect(path.hasPrefix(root + "/front/") && path.hasSuffix(".jpg"), "\(path)")
            let bytes = [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data())
            #expect(Array(bytes.prefix(2)) == [0xFF, 0xD8] && Array(bytes.suffix(2)) == [0xFF, 0xD9], "\(path): not a whole JPEG")
        }
        let onDisk = Self.files(under: root)
        #expect(onDisk.allSatisfy { $0.hasPrefix("front/") && $0.hasSuffix(".jpg") && !$0.contains("/.") }, "\(onDisk)")
        let stats = try #require(run.lines.last { $0["type"] as? String == "stats" })
        let counters = try #require(stats["snapshots"] as? [String: Any], "stats carry the snapshot counters")
        #expect((counters["written"] as? Int ?? 0) >= named.count && counters["failed"] as? Int == 0)
        #expect(run.log.contains("snapshots: "), "\(run.log)")
    }

    /// With `clips:`, every action.end names an MP4 under <state_dir>/clips/front/<day>/ (the
    /// looped clip's actions end at SIGTERM: their clips are written during shutdown), and
    /// each is there, an H.264 file the ffmpeg CLI decodes without error; nothing else is.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/ffmpeg")))
    func clipsAreWrittenAndNamedInTheEndEvents() throws {
        let dir = try setUp()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Until two stats lines after the first action: a second or more of it is buffered.
        let run = try runWithSnapshots(in: dir, sections: "clips: {pre_roll_s: 1, post_roll_s: 1}\n") { events, _ in
            guard let start = events.range(of: "\"action.start\"") else { return false }
            return events[start.upperBound...].components(separatedBy: "\"type\":\"stats\"").count > 2
        }
        #expect(run.status == 0, "\(run.log)")
        let ends = run.lines.filter { $0["type"] as? String == "action.end" }
        #expect(!ends.isEmpty)
        #expect(run.lines.filter { $0["type"] as? String != "action.end" }.allSatisfy { $0["clip"] == nil })
        let root = dir.appendingPathComponent("state/clips").path
        var named: [String] = []
        for end in ends {
            let clip = try #require(end["clip"] as? [String: Any], "\(end)")
            let path = try #require(clip["path"] as? String)
            let (from, to) = (clip["start_time"] as? Double ?? 0, clip["end_time"] as? Double ?? 0)
            #expect(path.hasPrefix(root + "/front/") && path.hasSuffix("/\(end["action_id"] as? String ?? "?").mp4"), "\(path)")
            #expect(to > from)
            named.append(path)
            let decode = Process()
            decode.executableURL = URL(fileURLWithPath: "/usr/bin/ffmpeg")
            decode.arguments = ["-v", "error", "-xerror", "-i", path, "-f", "null", "-"]
            let errors = Pipe()
            decode.standardError = errors
            try decode.run()
            decode.waitUntilExit()
            let complaint = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(decode.terminationStatus == 0 && complaint.isEmpty, "\(path): \(complaint)")
        }
        #expect(Self.files(under: root).map { root + "/" + $0 }.sorted() == named.sorted())
        let counters = run.lines.last { $0["type"] as? String == "stats" }?["clips"] as? [String: Any]
        #expect(counters != nil, "stats carry the clip counters")
        #expect(run.log.contains("clips: \(ends.count) written, 0 failed"), "\(run.log)")
    }

    /// A file size limit below one JPEG (prlimit --fsize, as a full disk would): every write
    /// fails with EFBIG and is logged with its file name and counted; the daemon goes on
    /// taking frames and scoring windows (actions start and end, stats keep counting) and
    /// leaves no snapshot or temporary file behind.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit")))
    func fileSizeLimitFailsSnapshotsButNotTheDaemon() throws {
        let dir = try setUp()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Until a write has failed and two stats lines came after the first action (the looped
        // clip's actions end at SIGTERM).
        let run = try runWithSnapshots(in: dir, prefix: ["prlimit", "--fsize=1000"]) { events, log in
            guard log.contains("File too large"), let start = events.range(of: "\"action.start\"") else { return false }
            return events[start.upperBound...].components(separatedBy: "\"type\":\"stats\"").count > 2
        }
        #expect(run.status == 0, "\(run.log)")
        let types = run.lines.compactMap { $0["type"] as? String }
        let starts = types.filter { $0 == "action.start" }.count
        #expect(starts >= 1 && starts == types.filter { $0 == "action.end" }.count, "\(types)")
        #expect(run.lines.allSatisfy { $0["snapshot"] == nil })
        let fps = run.lines.filter { $0["type"] as? String == "stats" }
            .compactMap { (($0["cameras"] as? [[String: Any]])?.first?["fps_in"] as? Double) }
        // The last stats line comes after the cameras stopped; the two before it saw frames.
        #expect(fps.count >= 3 && fps.dropLast().suffix(2).allSatisfy { $0 > 1 }, "capture went on: fps_in \(fps)")
        let failures = run.log.split(separator: "\n").filter { $0.contains("snapshot /") && $0.contains("File too large") }
        #expect(!failures.isEmpty && failures.allSatisfy { $0.contains(dir.path + "/state/snapshots/front/") && $0.contains(".jpg") },
                "\(run.log)")
        let counters = run.lines.last { $0["type"] as? String == "stats" }?["snapshots"] as? [String: Any]
        #expect((counters?["failed"] as? Int ?? 0) >= 1 && counters?["written"] as? Int == 0, "\(String(describing: counters))")
        #expect(Self.files(under: dir.appendingPathComponent("state/snapshots").path).isEmpty)
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
    /// --check-config with the drop-in to install, not become a camera that never connects, and
    /// so must a metrics port (in a private namespace even a loopback port is not the host's).
    /// `unshare -n` gives the same sandbox as PrivateNetwork=yes (root only).
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")), arguments: [
        ("  - id: cam\n    source: {url: \"rtsp://10.0.0.5/stream1\"}\n",
         "cameras[0].source.url: a network stream", "systemd/m2clipd-network.conf"),
        ("  - id: cam\n    source: {url: \"http://127.0.0.1:8080/cam.mjpeg\"}\nmetrics: {}\n",
         "metrics.listen: a metrics port", "systemd/m2clipd-metrics.conf"),
    ])
    func networkUseWithoutNetworkIsRefused(yaml: String, field: String, dropIn: String) throws {
        let open = try Self.checkConfig(yaml)
        #expect(open.status == 0, "\(open.stderr)")
        let sandboxed = try Self.checkConfig(yaml, prefix: ["unshare", "-n"])
        #expect(sandboxed.status != 0)
        #expect(sandboxed.stderr.contains("\(field), but this process has no network interface but loopback"), "\(sandboxed.stderr)")
        #expect(sandboxed.stderr.contains(dropIn))
        // A stream on this host itself needs no network.
        let local = try Self.checkConfig("  - id: cam\n    source: {url: \"http://127.0.0.1:8080/cam.mjpeg\"}\n", prefix: ["unshare", "-n"])
        #expect(local.status == 0, "\(local.stderr)")
    }
}
