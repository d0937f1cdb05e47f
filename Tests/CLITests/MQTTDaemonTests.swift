import Foundation
import NetworkTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The mosquitto broker binary, nil when it is not installed (scripts/setup.sh installs it).
let mosquittoBinary: String? = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

/// m2clipd publishing to a real Mosquitto broker that each test starts on a free loopback
/// port, with mosquitto_sub as the other client: topics and payloads, availability (online,
/// stopped, the last will), a broker that is down at start or restarts mid-run, Home Assistant
/// discovery, password authentication, refused configurations.
@Suite(.serialized, .enabled(if: mosquittoBinary != nil, "mosquitto is not installed (apt-get install mosquitto mosquitto-clients)"))
struct MQTTDaemonTests {
    /// A broker on `port` (a new free one by default), anonymous unless `passwords` is given.
    final class Broker {
        let port: UInt16
        let directory: URL
        private var server: ServerProcess?

        /// - Parameter settings: more mosquitto.conf lines for the listener (TLS files).
        init(directory: URL, port: UInt16 = closedPort(), passwords: [String: String] = [:], settings: String = "") throws {
            self.port = port
            self.directory = directory
            var conf = "listener \(port) 127.0.0.1\npersistence false\n" + settings
            if passwords.isEmpty {
                conf += "allow_anonymous true\n"
            } else {
                let file = directory.appendingPathComponent("passwords-\(port)").path
                for (user, password) in passwords {
                    let tool = Process()
                    tool.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_passwd")
                    tool.arguments = (FileManager.default.fileExists(atPath: file) ? ["-b"] : ["-b", "-c"]) + [file, user, password]
                    try tool.run()
                    tool.waitUntilExit()
                }
                conf += "allow_anonymous false\npassword_file \(file)\n"
            }
            try conf.write(to: directory.appendingPathComponent("broker-\(port).conf"), atomically: true, encoding: .utf8)
            try start()
        }

        func start() throws {
            server = try ServerProcess([mosquittoBinary!, "-c", directory.appendingPathComponent("broker-\(port).conf").path], port: port)
        }

        /// SIGKILL: the broker vanishes with its (non-persistent) retained messages.
        func kill() { server?.stop(); server = nil }

        deinit { kill() }
    }

    /// `mosquitto_sub -v` on `topics` (default: everything), its lines collected in a file.
    final class Subscriber {
        let process = Process()
        let output: URL

        init(port: UInt16, topics: [String] = ["#"], directory: URL, extra: [String] = []) throws {
            output = directory.appendingPathComponent("sub-\(UUID().uuidString.prefix(6)).log")
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_sub")
            process.arguments = ["-h", "127.0.0.1", "-p", "\(port)", "-v"] + topics.flatMap { ["-t", $0] } + extra
            process.standardOutput = try FileHandle(forWritingTo: output)
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        /// (topic, payload) per line so far.
        var messages: [(topic: String, payload: String)] {
            let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
            return text.split(separator: "\n", omittingEmptySubsequences: true).map { line in
                let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
            }
        }

        func payloads(_ topic: String) -> [String] { messages.filter { $0.topic == topic }.map(\.payload) }

        /// Waits up to `seconds` for `condition` on the messages.
        func wait(_ seconds: Double, _ condition: ([(topic: String, payload: String)]) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if condition(messages) { return true }
                usleep(100_000)
            }
            return condition(messages)
        }

        /// SIGKILL: SIGTERM is blocked in children of the test process (see `retained`).
        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        deinit { stop() }
    }

    /// The retained payload of `topic` on the broker (nil: none within 2 s). The wait is ours:
    /// children of the test process inherit its blocked signals, so mosquitto_sub's own -W
    /// timer (SIGALRM) and SIGTERM do not reach it; SIGKILL does.
    static func retained(_ topic: String, port: UInt16) throws -> String? {
        try retainedPayload(topic, port: port).map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .newlines) }
    }

    /// The retained payload's bytes, as sent (`topic` may hold wildcards: the first match).
    static func retainedPayload(_ topic: String, port: UInt16) throws -> Data? {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-retained-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let sub = Process()
        sub.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_sub")
        sub.arguments = ["-h", "127.0.0.1", "-p", "\(port)", "-t", topic, "-C", "1", "--retained-only", "-N"]
        sub.standardOutput = try FileHandle(forWritingTo: output)
        sub.standardError = FileHandle.nullDevice
        try sub.run()
        let deadline = Date().addingTimeInterval(2)
        while sub.isRunning && Date() < deadline { usleep(20_000) }
        let timedOut = sub.isRunning
        if timedOut { kill(sub.processIdentifier, SIGKILL) }
        sub.waitUntilExit()
        guard !timedOut, sub.terminationStatus == 0 else { return nil }
        return try Data(contentsOf: output)
    }

    static func publish(_ topic: String, _ payload: String, port: UInt16) throws {
        let pub = Process()
        pub.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_pub")
        pub.arguments = ["-h", "127.0.0.1", "-p", "\(port)", "-t", topic, "-m", payload]
        try pub.run()
        pub.waitUntilExit()
    }

    /// A tiny untrained model (labels juggling, surfing), built once.
    nonisolated(unsafe) static var modelFile: URL?
    static let modelLock = NSLock()
    static func model() throws -> URL {
        try modelLock.withLock {
            if let modelFile { return modelFile }
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clipd-mqtt-model-\(getpid())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let made = try CLITests.makeTinyModel(in: dir)
            modelFile = made
            return made
        }
    }

    /// A fresh directory with m2clipd.yaml: the looped fixture as camera `front`, and `mqtt`
    /// (YAML lines under `mqtt:`).
    func setUp(mqtt: String, camera: String = "front") throws -> URL {
        try Self.setUp(camera: camera, sections: "mqtt:\n" + mqtt.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
    }

    /// A fresh directory with m2clipd.yaml: the looped fixture as `camera`, then `sections`
    /// (top-level YAML).
    static func setUp(camera: String, sections: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clipd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let video = CLITests.fixtures.appendingPathComponent("video/phone_h264_rot90.mp4").path
        try """
        model: \(try Self.model().path)
        socket:
          path: \(dir.path)/events.sock
        stats_interval_s: 1
        cameras:
          - id: \(camera)
            source: {file: \(video), loop: true}
            sample_fps: 8
            stride: 2
            head: zero-shot
            thresholds: {start: 0.3, end: 0.2}
        \(sections)

        """.write(to: dir.appendingPathComponent("m2clipd.yaml"), atomically: true, encoding: .utf8)
        return dir
    }

    final class Daemon {
        let process = Process()
        let log: URL
        init(_ dir: URL) throws {
            log = dir.appendingPathComponent("daemon.log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.executableURL = DaemonProcessTests.daemon
            process.arguments = ["--config", dir.appendingPathComponent("m2clipd.yaml").path]
            process.standardError = try FileHandle(forWritingTo: log)
            try process.run()
        }
        var text: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        func wait(_ seconds: Double, for needle: String, count: Int = 1) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if text.components(separatedBy: needle).count - 1 >= count { return true }
                usleep(100_000)
            }
            return false
        }
        func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }
        func stop() -> Int32 {
            if process.isRunning { signal(SIGTERM) }
            process.waitUntilExit()
            return process.terminationStatus
        }
        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
    }

    /// Writes the broker's port into the configuration's `port: PORT`.
    static func point(_ dir: URL, at broker: Broker) throws {
        let config = dir.appendingPathComponent("m2clipd.yaml")
        try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: "PORT", with: "\(broker.port)")
            .write(to: config, atomically: true, encoding: .utf8)
    }

    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    @Test(arguments: ["3.1.1", "5"])
    func eventsStateAndDiscoveryReachTheBrokerAndSIGTERMLeavesStopped(protocolVersion: String) throws {
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: PORT\nprotocol: \"\(protocolVersion)\"\nhome_assistant: true\nclient_id: m2clipd-test")
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try Broker(directory: dir)
        try Self.point(dir, at: broker)
        let sub = try Subscriber(port: broker.port, directory: dir)
        let daemon = try Daemon(dir)
        #expect(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        let discovery = "homeassistant/device/m2clipd-test/config"
        #expect(sub.wait(10) { m in m.contains { $0.topic == "m2clip/events" } && m.contains { $0.topic == "m2clip/stats" } })
        #expect(sub.wait(5) { m in m.contains { $0.topic == discovery } })
        // Home Assistant's birth message: discovery again.
        try Self.publish("homeassistant/status", "online", port: broker.port)
        #expect(sub.wait(5) { m in m.filter { $0.topic == discovery }.count >= 2 }, "discovery not re-sent on the birth message")
        sleep(1)
        #expect(daemon.stop() == 0, "\(daemon.text)")
        #expect(sub.wait(5) { m in m.last?.topic == "m2clip/available" })
        sub.stop()

        #expect(sub.payloads("m2clip/available").first == "online")
        #expect(sub.payloads("m2clip/available").last == "stopped")
        #expect(try Self.retained("m2clip/available", port: broker.port) == "stopped")
        #expect(sub.payloads("m2clip/front/status").contains("online"))
        #expect(sub.payloads("m2clip/front/status").last == "offline")

        let events = sub.payloads("m2clip/events").map(Self.json)
        let types = events.compactMap { $0["type"] as? String }
        let news = types.filter { $0 == "new" }.count, ends = types.filter { $0 == "end" }.count
        #expect(news >= 1 && news == ends, "new \(news), end \(ends): every action ends on SIGTERM")
        for event in events {
            let after = try #require(event["after"] as? [String: Any]), before = try #require(event["before"] as? [String: Any])
            #expect(Set(after.keys) == ["id", "camera", "label", "score", "top_score", "start_time", "end_time",
                                        "has_snapshot", "has_clip"], "\(after.keys.sorted())")
            #expect(after["camera"] as? String == "front" && ["juggling", "surfing"].contains(after["label"] as? String))
            #expect(after["id"] as? String == before["id"] as? String)
            #expect(after["has_snapshot"] as? Bool == false && after["has_clip"] as? Bool == false)
            #expect((after["top_score"] as? Double ?? 0) >= (after["score"] as? Double ?? 1))
            if event["type"] as? String == "end" {
                #expect((after["end_time"] as? Double ?? 0) >= (after["start_time"] as? Double ?? 1))
            } else {
                #expect(after["end_time"] is NSNull, "end_time is null until the end")
            }
        }
        // ON at each new, OFF once its actions ended; retained, so the broker still has OFF.
        for label in ["juggling", "surfing"] {
            let states = sub.payloads("m2clip/front/\(label)")
            #expect(states.last == "OFF", "\(label): \(states)")
            #expect(try Self.retained("m2clip/front/\(label)", port: broker.port) == "OFF")
        }
        #expect(sub.payloads("m2clip/front/juggling").contains("ON") || sub.payloads("m2clip/front/surfing").contains("ON"))
        let fired = sub.payloads("m2clip/events/front").map(Self.json)
        #expect(fired.count == news && fired.allSatisfy { ["juggling", "surfing"].contains($0["event_type"] as? String) })

        let stats = Self.json(try #require(sub.payloads("m2clip/stats").last))
        #expect((stats["cameras"] as? [[String: Any]])?.first?["camera"] as? String == "front")
        let counters = try #require(stats["mqtt"] as? [String: Any], "stats carry the MQTT counters")
        #expect(counters["dropped"] as? Int == 0 && (counters["sent"] as? Int ?? 0) > 0)

        // Home Assistant device discovery.
        let announced = Self.json(try #require(sub.payloads(discovery).last))
        let device = try #require(announced["device"] as? [String: Any])
        #expect(device["identifiers"] as? [String] == ["m2clipd-test"])
        #expect((announced["origin"] as? [String: Any])?["name"] as? String == "m2clipd")
        let availability = try #require((announced["availability"] as? [[String: Any]])?.first)
        #expect(availability["topic"] as? String == "m2clip/available")
        let components = try #require(announced["components"] as? [String: [String: Any]])
        #expect(Set(components.keys) == ["front_action", "front_status", "front_label_juggling", "front_label_surfing"])
        #expect(components["front_action"]?["platform"] as? String == "event")
        #expect(components["front_action"]?["event_types"] as? [String] == ["juggling", "surfing"])
        #expect(components["front_action"]?["state_topic"] as? String == "m2clip/events/front")
        #expect(components["front_label_surfing"]?["platform"] as? String == "binary_sensor")
        #expect(components["front_label_surfing"]?["device_class"] as? String == "occupancy")
        #expect(components["front_label_surfing"]?["state_topic"] as? String == "m2clip/front/surfing")
        #expect(components["front_status"]?["state_topic"] as? String == "m2clip/front/status")
        #expect(components.values.allSatisfy { ($0["unique_id"] as? String)?.hasPrefix("m2clipd-test_") == true })
        #expect(daemon.text.contains("dropped, 0 unsent at shutdown"), "\(daemon.text)")
    }

    /// With `snapshots:`, each action's JPEG goes retained to <prefix>/<camera>/<label>/snapshot:
    /// after the run the broker holds one, byte for byte a snapshot file the daemon wrote, and
    /// the Frigate-shaped events say has_snapshot once a snapshot exists.
    @Test func snapshotsArePublishedRetained() throws {
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: PORT")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("m2clipd.yaml")
        try (String(contentsOf: config, encoding: .utf8) + "state_dir: \(dir.path)/state\nsnapshots: {quality: 80}\n")
            .write(to: config, atomically: true, encoding: .utf8)
        let broker = try Broker(directory: dir)
        try Self.point(dir, at: broker)
        let sub = try Subscriber(port: broker.port, topics: ["m2clip/events"], directory: dir)
        let daemon = try Daemon(dir)
        #expect(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        #expect(sub.wait(15) { m in m.contains { Self.json($0.payload)["type"] as? String == "update" } })
        sleep(2)
        #expect(daemon.stop() == 0, "\(daemon.text)")
        sub.stop()

        let jpeg = try #require(try Self.retainedPayload("m2clip/front/+/snapshot", port: broker.port), "no retained snapshot")
        #expect(Array(jpeg.prefix(2)) == [0xFF, 0xD8] && Array(jpeg.suffix(2)) == [0xFF, 0xD9])
        let root = dir.appendingPathComponent("state/snapshots").path
        let files = (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".jpg") }
        #expect(files.contains { (try? Data(contentsOf: URL(fileURLWithPath: root + "/" + $0))) == jpeg },
                "the retained JPEG is none of \(files)")
        let flags = sub.payloads("m2clip/events").map(Self.json).compactMap { ($0["after"] as? [String: Any])?["has_snapshot"] as? Bool }
        #expect(flags.contains(true), "\(flags)")
    }

    /// kill -9: no DISCONNECT, so the broker publishes the retained last will.
    @Test func killedDaemonLeavesTheLastWillOffline() throws {
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: PORT")
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try Broker(directory: dir)
        try Self.point(dir, at: broker)
        let daemon = try Daemon(dir)
        #expect(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        #expect(try Self.retained("m2clip/available", port: broker.port) == "online")
        daemon.signal(SIGKILL)
        daemon.process.waitUntilExit()
        var will: String?
        for _ in 0..<20 where will != "offline" {
            will = try Self.retained("m2clip/available", port: broker.port)
            usleep(100_000)
        }
        #expect(will == "offline")
    }

    /// A broker that is not there yet: the socket's events flow regardless, and once the broker
    /// is up m2clipd connects and publishes.
    @Test func brokerDownAtStartThenUp() throws {
        let port = closedPort()
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: \(port)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let daemon = try Daemon(dir)
        let socket = dir.appendingPathComponent("events.sock").path
        #expect(DaemonProcessTests().waitFor(socket, seconds: 20))
        let (subscriber, out) = try DaemonProcessTests().startSubscriber(socket)
        sleep(3)
        #expect(daemon.text.contains("mqtt: 127.0.0.1:\(port):"), "the refused connection is logged: \(daemon.text)")
        let broker = try Broker(directory: dir, port: port)
        let sub = try Subscriber(port: broker.port, directory: dir)
        #expect(daemon.wait(15, for: "mqtt: connected"), "\(daemon.text)")
        #expect(sub.wait(10) { m in m.contains { $0.topic == "m2clip/events" } })
        #expect(daemon.stop() == 0)
        subscriber.waitUntilExit()
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").compactMap { Self.json(String($0))["type"] as? String }
        // Stats every second over ≥ 3 s without a broker, and actions on the socket.
        #expect(lines.filter { $0 == "stats" }.count >= 3, "\(lines)")
        #expect(lines.contains("action.start"), "\(lines)")
        #expect(try Self.retained("m2clip/available", port: broker.port) == "stopped")
    }

    /// The broker dies mid-run (with its retained messages) and comes back on the same port:
    /// m2clipd reconnects, sends its retained state again, and counts what the small buffer
    /// had to drop meanwhile.
    @Test func brokerRestartMidRunReconnectsAndCountsDrops() throws {
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: PORT\nbuffer: 4")
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try Broker(directory: dir)
        try Self.point(dir, at: broker)
        let daemon = try Daemon(dir)
        #expect(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        sleep(1)
        broker.kill()
        sleep(4)
        try broker.start()
        let sub = try Subscriber(port: broker.port, directory: dir)
        #expect(daemon.wait(20, for: "mqtt: connected", count: 2), "\(daemon.text)")
        #expect(sub.wait(10) { m in m.contains { $0.topic == "m2clip/stats" } })
        #expect(sub.payloads("m2clip/available").first == "online", "availability sent again after the reconnect")
        #expect(sub.payloads("m2clip/front/status").contains("online"), "camera status sent again")
        let stats = Self.json(try #require(sub.payloads("m2clip/stats").last))
        let dropped = (stats["mqtt"] as? [String: Any])?["dropped"] as? Int ?? 0
        #expect(dropped > 0, "4 s of events into a buffer of 4: \(stats)")
        #expect(daemon.stop() == 0)
        let summary = try #require(daemon.text.split(separator: "\n").last { $0.contains("message(s) sent") })
        #expect(!summary.contains(" 0 dropped"), "\(summary)")
    }

    /// The broker is down for a while (killed, then started again on the same port) with the
    /// default buffer: every action.start and action.end produced meanwhile (a SIGHUP reload
    /// ends the open actions and starts new ones) reaches the broker after the reconnect as
    /// `new`/`end` on m2clip/events, none is dropped, and capture never stopped (the socket's
    /// stats during the outage show frames coming in).
    @Test func brokerOutageLosesNoStartOrEndWithinTheBuffer() throws {
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: PORT")
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try Broker(directory: dir)
        try Self.point(dir, at: broker)
        let daemon = try Daemon(dir)
        #expect(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        let socketLog = dir.appendingPathComponent("socket.ndjson")
        FileManager.default.createFile(atPath: socketLog.path, contents: nil)
        let socketSubscriber = Process()
        socketSubscriber.executableURL = CLITests.binary
        socketSubscriber.arguments = ["subscribe", "--socket", dir.appendingPathComponent("events.sock").path, "--json"]
        socketSubscriber.standardOutput = try FileHandle(forWritingTo: socketLog)
        try socketSubscriber.run()
        defer { if socketSubscriber.isRunning { socketSubscriber.terminate() } }
        sleep(2)

        broker.kill()
        let down = Date().timeIntervalSince1970
        sleep(1)
        daemon.signal(SIGHUP) // ends the open actions, restarts the camera: starts and ends while down
        sleep(3)
        let up = Date().timeIntervalSince1970
        try broker.start()
        let sub = try Subscriber(port: broker.port, topics: ["m2clip/events", "m2clip/stats"], directory: dir)
        #expect(daemon.wait(20, for: "mqtt: connected", count: 2), "\(daemon.text)")
        #expect(sub.wait(10) { m in m.contains { $0.topic == "m2clip/stats" } })
        sleep(1)
        #expect(daemon.stop() == 0)
        sub.stop()

        let socket = ((try? String(contentsOf: socketLog, encoding: .utf8)) ?? "").split(separator: "\n").map { Self.json(String($0)) }
        let during = socket.filter { ($0["ts"] as? Double).map { $0 >= down && $0 < up } ?? false }
        func ids(_ type: String) -> Set<String> {
            Set(during.filter { $0["type"] as? String == type }.compactMap { $0["action_id"] as? String })
        }
        let starts = ids("action.start"), ends = ids("action.end")
        #expect(!starts.isEmpty && !ends.isEmpty, "the reload made starts and ends while the broker was down: \(during.count) events")
        var sent: [String: Set<String>] = [:]
        for payload in sub.payloads("m2clip/events") {
            let message = Self.json(payload)
            if let type = message["type"] as? String, let id = (message["after"] as? [String: Any])?["id"] as? String {
                sent[type, default: []].insert(id)
            }
        }
        #expect(starts.isSubset(of: sent["new"] ?? []), "starts while down \(starts), sent after the reconnect \(sent["new"] ?? [])")
        #expect(ends.isSubset(of: sent["end"] ?? []), "ends while down \(ends), sent after the reconnect \(sent["end"] ?? [])")
        // Capture went on: every stats line of the outage has frames coming in.
        let outageStats = during.filter { $0["type"] as? String == "stats" }
        let rates = outageStats.compactMap { (($0["cameras"] as? [[String: Any]])?.first?["fps_in"] as? Double) }
        #expect(outageStats.count >= 2 && rates.count == outageStats.count && rates.allSatisfy { $0 > 5 }, "fps_in during the outage: \(rates)")
        let summary = try #require(daemon.text.split(separator: "\n").last { $0.contains("message(s) sent") })
        #expect(summary.contains(" 0 dropped"), "\(summary)")
        print("broker outage \(String(format: "%.1f", up - down)) s: \(starts.count) start(s), \(ends.count) end(s) produced, all sent; fps_in \(rates); \(summary)")
    }

    /// SIGHUP with the camera renamed: Home Assistant gets the old camera's components with
    /// only their platform (removal) and the new one's in full; the old state topics lose their
    /// retained payloads.
    @Test func reloadRemovesDroppedCamerasFromDiscoveryAndTheBroker() throws {
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: PORT\nhome_assistant: true\nclient_id: m2clipd-reload")
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try Broker(directory: dir)
        try Self.point(dir, at: broker)
        let sub = try Subscriber(port: broker.port, topics: ["homeassistant/#"], directory: dir)
        let daemon = try Daemon(dir)
        #expect(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        #expect(try Self.retained("m2clip/front/surfing", port: broker.port) != nil)
        let config = dir.appendingPathComponent("m2clipd.yaml")
        try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: "id: front", with: "id: back")
            .write(to: config, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(daemon.wait(10, for: "reloaded"), "\(daemon.text)")
        let topic = "homeassistant/device/m2clipd-reload/config"
        #expect(sub.wait(10) { m in m.filter { $0.topic == topic }.count >= 2 })
        #expect(try Self.retained("m2clip/front/surfing", port: broker.port) == nil, "old label state still retained")
        #expect(try Self.retained("m2clip/front/status", port: broker.port) == nil, "old camera status still retained")
        #expect(try Self.retained("m2clip/back/surfing", port: broker.port) != nil)
        #expect(daemon.stop() == 0)
        sub.stop()
        let last = Self.json(try #require(sub.payloads(topic).last))
        let components = try #require(last["components"] as? [String: [String: Any]])
        #expect(components["front_action"].map { Set($0.keys) } == ["platform"], "\(components.keys.sorted())")
        #expect(components["front_label_juggling"]?["platform"] as? String == "binary_sensor")
        #expect(components["front_label_juggling"]?.count == 1)
        #expect(components["back_action"]?["event_types"] as? [String] == ["juggling", "surfing"])
        #expect(components["back_status"]?["state_topic"] as? String == "m2clip/back/status")
    }

    /// A TLS listener with a certificate from a CA made here: m2clipd connects with `ca_file`.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "openssl is not installed"))
    func tlsWithACAFile() throws {
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: PORT\ntls: {ca_file: ca.pem}")
        defer { try? FileManager.default.removeItem(at: dir) }
        func openssl(_ arguments: String) throws {
            let tool = Process()
            tool.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            tool.arguments = arguments.split(separator: " ").map(String.init)
            tool.currentDirectoryURL = dir
            tool.standardOutput = FileHandle.nullDevice
            tool.standardError = FileHandle.nullDevice
            try tool.run()
            tool.waitUntilExit()
            #expect(tool.terminationStatus == 0, "openssl \(arguments)")
        }
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(to: dir.appendingPathComponent("ext.cnf"), atomically: true, encoding: .utf8)
        try openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=m2clip-test-CA")
        try openssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost")
        try openssl("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf")
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: dir.appendingPathComponent("server.key").path)
        let broker = try Broker(directory: dir, settings: "cafile \(dir.path)/ca.pem\ncertfile \(dir.path)/server.pem\nkeyfile \(dir.path)/server.key\n")
        try Self.point(dir, at: broker)
        let daemon = try Daemon(dir)
        #expect(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        #expect(daemon.stop() == 0)
        #expect(daemon.text.contains(" 0 unsent at shutdown"), "\(daemon.text)")
    }

    @Test func passwordFromAFileAndARefusedPassword() throws {
        let dir = try setUp(mqtt: "host: 127.0.0.1\nport: PORT\nusername: m2clipd\npassword_file: mqtt-password")
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try Broker(directory: dir, passwords: ["m2clipd": "s3cret"])
        try Self.point(dir, at: broker)
        try "s3cret\n".write(to: dir.appendingPathComponent("mqtt-password"), atomically: true, encoding: .utf8)
        let daemon = try Daemon(dir)
        #expect(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        #expect(daemon.stop() == 0)

        try "wrong\n".write(to: dir.appendingPathComponent("mqtt-password"), atomically: true, encoding: .utf8)
        let refused = try Daemon(dir)
        #expect(refused.wait(20, for: "refused"), "\(refused.text)")
        #expect(refused.stop() == 0)
        #expect(!refused.text.contains("wrong"), "the password never shows")
    }

    @Test(arguments: [
        ("qos: 3", "mqtt.qos: must be 0, 1 or 2 (got 3)"),
        ("protocol: \"4\"", "mqtt.protocol: \"4\" is not 3.1.1 or 5"),
        ("password: x", "mqtt.username: missing (a password needs a username)"),
        ("port: 0", "mqtt.port: must be in 1...65535 (got 0)"),
        ("topic_prefix: \"a/#\"", "mqtt.topic_prefix: \"a/#\" may not contain the MQTT wildcards + or #"),
        ("tls: {ca_file: missing.pem}", "mqtt.tls.ca_file: no readable file at"),
        ("hots: x", "mqtt.hots: unknown key"),
    ])
    func badMQTTConfigurationIsRefusedNamingTheField(line: String, message: String) throws {
        let check = try DaemonProcessTests.checkConfig(
            "  - id: cam\n    source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30}\nmqtt:\n  host: 127.0.0.1\n  \(line)\n")
        #expect(check.status != 0)
        #expect(check.stderr.contains(message), "\(check.stderr)")
    }
}
