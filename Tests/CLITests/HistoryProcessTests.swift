import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// m2clipd's event history as users meet it: real daemon processes on a state directory,
/// restarted, killed with SIGKILL, short of disk; `m2clip subscribe` and `m2clip events`.
@Suite(.serialized) struct HistoryProcessTests {
    let daemons = DaemonProcessTests()

    /// A tiny model and a configuration with a state directory and `cameras` cameras on a
    /// looped file; `fast` samples every frame into a window (many events).
    func setUp(cameras: Int = 1, fast: Bool = false) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clipd-history-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        _ = try CLITests.makeTinyModel(in: dir)
        let video = CLITests.fixtures.appendingPathComponent("video/phone_h264_rot90.mp4").path
        let cameraList = (0..<cameras).map { i in
            """
              - id: cam\(i)
                source: {file: \(video), loop: true}
                sample_fps: \(fast ? 30 : 8)
                stride: \(fast ? 1 : 2)
                head: zero-shot
                thresholds: {start: 0.3, end: 0.2}
            """
        }.joined(separator: "\n")
        try """
        model: tiny.m2c
        socket:
          path: \(dir.path)/events.sock
        stats_interval_s: 1
        state_dir: \(dir.path)/state
        cameras:
        \(cameraList)
        """.write(to: dir.appendingPathComponent("m2clipd.yaml"), atomically: true, encoding: .utf8)
        return dir
    }

    /// `m2clip subscribe --json` with `extra` arguments, its output going to `file` (a file,
    /// not a pipe, so a slow test never makes the subscriber fall behind).
    func subscribe(_ socket: String, to file: URL, _ extra: [String] = []) throws -> Process {
        FileManager.default.createFile(atPath: file.path, contents: nil)
        let subscriber = Process()
        subscriber.executableURL = CLITests.binary
        subscriber.arguments = ["subscribe", "--socket", socket, "--json"] + extra
        subscriber.standardOutput = try FileHandle(forWritingTo: file)
        try subscriber.run()
        return subscriber
    }

    /// The complete JSON lines of `file` (raw text and parsed).
    func lines(_ file: URL) -> [(text: String, json: [String: Any])] {
        let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]).map { (String(line), $0) }
        }
    }

    /// "epoch:seq" of every event line that history keeps (all but stats and session lines).
    func stored(_ lines: [(text: String, json: [String: Any])]) -> [String] {
        lines.filter { $0.json["seq"] != nil && $0.json["type"] as? String != "stats" }
            .map { "\($0.json["epoch"]!):\($0.json["seq"]!)" }
    }

    func stop(_ daemon: Process, _ stderr: Pipe) -> String {
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        return String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    @Test func restartKeepsHistoryAndSinceReplaysExactlyTheMissedEvents() throws {
        let dir = try setUp()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cli = CLITests()
        let (first, firstErr, socket) = try daemons.startDaemon(in: dir)
        let before = dir.appendingPathComponent("before.ndjson")
        let early = try subscribe(socket, to: before)
        sleep(3)
        kill(early.processIdentifier, SIGKILL)   // SIGTERM: blocked in processes the test runner spawns
        early.waitUntilExit()
        sleep(2)   // events this subscriber misses
        let firstLog = stop(first, firstErr)
        #expect(first.terminationStatus == 0, "\(firstLog)")
        let last = try #require(lines(before).last { $0.json["seq"] != nil }?.json, "no event before the restart")
        let epoch = try #require(last["epoch"] as? String), seq = try #require(last["seq"] as? Int)

        let (second, secondErr, _) = try daemons.startDaemon(in: dir)
        sleep(2)   // the new run publishes before the subscriber comes back
        let after = dir.appendingPathComponent("after.ndjson")
        let resumed = try subscribe(socket, to: after, ["--since", "\(seq)", "--epoch", epoch])
        sleep(2)
        let secondLog = stop(second, secondErr)
        resumed.waitUntilExit()
        #expect(second.terminationStatus == 0, "\(secondLog)")
        #expect(secondLog.contains("history: \(dir.path)/state/events.sqlite:") && secondLog.contains("run(s)"),
                "the start says what it found: \(secondLog)")

        // Everything stored after the resume point, in order, is exactly what came back.
        let all = try cli.run(["events", "--state-dir", dir.appendingPathComponent("state").path, "--json", "--limit", "0"])
        #expect(all.status == 0, "\(all.stderr)")
        let history = all.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let points = history.map { "\($0["epoch"]!):\($0["seq"]!)" }
        let resumePoint = try #require(points.lastIndex { $0.hasPrefix(epoch + ":") && Int($0.split(separator: ":")[1])! <= seq })
        let missed = Array(points[(resumePoint + 1)...])
        #expect(missed.contains { $0.hasPrefix(epoch + ":") }, "the first run went on after the subscriber left")
        #expect(missed.contains { !$0.hasPrefix(epoch + ":") }, "and the second run published")
        let got = lines(after)
        #expect(got.first?.json["type"] as? String == "hello")
        #expect(stored(got) == missed, "no gap, no duplicate across the restart")
    }

    @Test func sigkillUnderLoadLosesNoEventASubscriberReceived() throws {
        let dir = try setUp(cameras: 3, fast: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (daemon, _, socket) = try daemons.startDaemon(in: dir)
        let outputs = (0..<6).map { dir.appendingPathComponent("sub\($0).ndjson") }
        let subscribers = try outputs.map { try subscribe(socket, to: $0) }
        sleep(4)
        kill(daemon.processIdentifier, SIGKILL)
        daemon.waitUntilExit()
        subscribers.forEach { $0.waitUntilExit() }

        let run = try CLITests().run(["events", "--state-dir", dir.appendingPathComponent("state").path, "--json", "--limit", "0"])
        #expect(run.status == 0, "the database opens after SIGKILL: \(run.stderr)")
        let inHistory = Set(run.stdout.split(separator: "\n").map(String.init))
        var received = 0
        for output in outputs {
            for line in lines(output) where line.json["seq"] != nil && line.json["type"] as? String != "stats" {
                received += 1
                #expect(inHistory.contains(line.text), "received but not stored: \(line.text.prefix(120))")
            }
        }
        #expect(received > 100, "heavy enough: \(received) lines received")
    }

    /// A file-size limit (prlimit --fsize) stops history writes the way a full disk does:
    /// events keep reaching subscribers, the failure is counted, the database stays whole.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit")))
    func aFileSizeLimitStopsHistoryButNotEvents() throws {
        let dir = try setUp(cameras: 2)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Room to create the database and store a few events (a commit adds a few 4 KB pages
        // to the WAL), then EFBIG.
        let (daemon, daemonErr, socket) = try daemons.startDaemon(in: dir, under: ["prlimit", "--fsize=262144"])
        let output = dir.appendingPathComponent("live.ndjson")
        let subscriber = try subscribe(socket, to: output)
        sleep(8)
        let log = stop(daemon, daemonErr)
        subscriber.waitUntilExit()
        #expect(daemon.terminationStatus == 0, "\(log)")
        let database = dir.path + "/state/events.sqlite"
        #expect(log.contains("history \(database): write failed"), "the error names the file: \(log)")
        #expect(log.components(separatedBy: "write failed").count == 2, "logged once, not per event: \(log)")

        let got = lines(output)
        let stats = got.map(\.json).filter { $0["type"] as? String == "stats" }
        let failing = try #require(stats.firstIndex { ($0["history"] as? [String: Any])?["writing"] as? Bool == false },
                                   "a stats line shows history failing: \(stats.map { $0["history"] ?? "-" })")
        let counters = stats[failing]["history"] as? [String: Any] ?? [:]
        #expect((counters["write_failures"] as? Int ?? 0) >= 1)
        let failedAt = stats[failing]["seq"] as? Int ?? .max
        #expect(got.contains { ($0.json["seq"] as? Int ?? 0) > failedAt && $0.json["type"] as? String != "stats" },
                "events still flow after the failure")

        let run = try CLITests().run(["events", "--db", database, "--json", "--limit", "0"])
        #expect(run.status == 0, "the database still opens: \(run.stderr)")
        let kept = run.stdout.split(separator: "\n").map(String.init)
        #expect(!kept.isEmpty, "what was written before the limit is there")
        // Those published once the subscriber was there are byte for byte what it got.
        let sent = Set(got.map(\.text))
        let firstSeen = got.compactMap { $0.json["seq"] as? Int }.min() ?? .max
        let whileSubscribed = kept.filter { line in
            ((try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["seq"] as? Int ?? 0) >= firstSeen
        }
        #expect(!whileSubscribed.isEmpty && whileSubscribed.allSatisfy { sent.contains($0) })

        // The next start, without the limit, says what it found and goes on writing.
        let (again, againErr, _) = try daemons.startDaemon(in: dir)
        sleep(2)
        let againLog = stop(again, againErr)
        #expect(againLog.contains("history: \(database): \(kept.count) event(s) of 1 run(s)"), "\(againLog)")
        #expect(!againLog.contains("write failed"), "\(againLog)")
    }

    @Test func eventsCommandPrintsATableFiltersAndExplainsItself() throws {
        let dir = try setUp(cameras: 2)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (daemon, daemonErr, _) = try daemons.startDaemon(in: dir)
        sleep(3)
        // While the daemon runs: the history is read-only to the command.
        let cli = CLITests()
        let live = try cli.run(["events", "--config", dir.appendingPathComponent("m2clipd.yaml").path])
        #expect(live.status == 0, "\(live.stderr)")
        _ = stop(daemon, daemonErr)
        let table = live.stdout.split(separator: "\n")
        #expect(table.first?.hasPrefix("TIME") == true && table.first?.contains("CAMERA") == true, "\(live.stdout)")
        #expect(table.count > 2 && table.dropFirst().allSatisfy { $0.contains("cam") }, "\(live.stdout)")

        let state = dir.appendingPathComponent("state").path
        let cam1 = try cli.run(["events", "--state-dir", state, "--camera", "cam1", "--json", "--since", "1h", "--limit", "0"])
        #expect(cam1.status == 0, "\(cam1.stderr)")
        let cameras = Set(cam1.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["camera"] as? String
        })
        #expect(cameras == ["cam1"], "\(cameras)")
        let none = try cli.run(["events", "--state-dir", state, "--until", "2000-01-01", "--json"])
        #expect(none.status == 0 && none.stdout.isEmpty)
        let two = try cli.run(["events", "--state-dir", state, "--json", "--limit", "2"])
        #expect(two.stdout.split(separator: "\n").count == 2)

        let missing = try cli.run(["events", "--db", dir.path + "/nothing.sqlite"])
        #expect(missing.status != 0 && missing.stderr.contains(dir.path + "/nothing.sqlite"), "\(missing.stderr)")
        let badTime = try cli.run(["events", "--db", dir.path + "/x", "--since", "yesterday"])
        #expect(badTime.status == 64 && badTime.stderr.contains("--since yesterday"), "\(badTime.stderr)")
        let help = try cli.run(["events", "--help"])
        for text in ["--camera", "--label", "--since", "--until", "--limit", "--json", "--state-dir", "--db", "2h", "read-only"] {
            #expect(help.stdout.contains(text), "help lacks \(text): \(help.stdout)")
        }
    }
}
