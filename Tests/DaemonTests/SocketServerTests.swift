import Foundation
import Testing
@testable import Daemon

/// A fresh temporary directory for socket files, removed by the caller.
func eventSocketDirectory() -> URL {
    // Short names: sun_path holds 107 bytes.
    let dir = URL(fileURLWithPath: "/tmp").appendingPathComponent("ev-\(UUID().uuidString.prefix(8))")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

let eventTestHello = DaemonEvent.Hello(daemon: "m2clipd", version: "test", model: "tiny", cameras: ["door", "yard"], labels: 3)

/// Polls `condition` every millisecond for up to `seconds`.
func eventuallyTrue(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date(timeIntervalSinceNow: seconds)
    while Date() < deadline { if condition() { return true }; usleep(1000) }
    return condition()
}

func eventServerOptions() -> SocketServer.Options {
    var o = SocketServer.Options()
    o.subscribeWait = 0.3
    o.stopGrace = 0.5
    o.idleCheck = 0.05
    return o
}

/// A socket server with its bus on a fresh socket path (`eventServerOptions`, then `configure`);
/// `stop()` stops it and removes the directory.
final class EventServerFixture {
    let directory: URL
    let path: String
    let bus: EventBus
    let server: SocketServer

    init(epoch: String, ringCapacity: Int, configure: (inout SocketServer.Options) -> Void = { _ in },
         beforeStart: (EventBus) -> Void = { _ in }) throws {
        directory = eventSocketDirectory()
        path = directory.appendingPathComponent("ev.sock").path
        bus = EventBus(epoch: epoch, ringCapacity: ringCapacity)
        beforeStart(bus)
        var options = eventServerOptions()
        configure(&options)
        do {
            server = try SocketServer(path: path, bus: bus, hello: eventTestHello, options: options)
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    func stop() {
        server.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite(.serialized) struct SocketServerTests {
    @Test func helloFirstThenFilteredEvents() throws {
        let fixture = try EventServerFixture(epoch: "run-7", ringCapacity: 64, beforeStart: { bus in
            bus.publish(.stats(.init(cameras: [])))
        })
        defer { fixture.stop() }
        let (path, bus) = (fixture.path, fixture.bus)

        let client = try EventClient(path: path)
        let hello = eventJSON(try #require(try client.readLine(timeout: 5)))
        #expect(hello["type"] as? String == "hello")
        #expect(hello["daemon"] as? String == "m2clipd")
        #expect(hello["epoch"] as? String == "run-7")
        #expect(hello["latest_seq"] as? Int == 1)
        try client.send(SubscribeRequest(cameras: ["yard"]))
        #expect(eventuallyTrue { bus.subscriberCount == 1 })
        bus.publish(.actionStart(eventAction("a", camera: "door")))
        bus.publish(.actionStart(eventAction("b", camera: "yard")))
        let line = eventJSON(try #require(try client.readLine(timeout: 5)))
        #expect(line["action_id"] as? String == "b")
        #expect(line["seq"] as? Int == 3)
    }

    @Test func stuckSubscriberNeverSlowsTheOthers() throws {
        let fixture = try EventServerFixture(epoch: "e", ringCapacity: 1024) { options in
            options.queueCapacity = 20_000
            options.sendTimeout = 0.3
        }
        defer { fixture.stop() }
        let (path, bus, server) = (fixture.path, fixture.bus, fixture.server)

        let stuck = try EventClient(path: path)
        try stuck.send(SubscribeRequest())
        let reader = try EventClient(path: path)
        try reader.send(SubscribeRequest())
        #expect(eventuallyTrue { bus.subscriberCount == 2 })

        let count = 10_000
        let received = EventTestCounter()
        let readerDone = DispatchSemaphore(value: 0)
        let box = EventTestBox(reader)
        Thread {
            let reader = box.value
            while let line = try? reader.readLine(timeout: 10), !reader.timedOut {
                if line.contains("\"action.start\"") { received.add() }
                if received.value == count { break }
            }
            readerDone.signal()
        }.start()

        let start = Date()
        for i in 0..<count { bus.publish(.actionStart(eventAction("a\(i)"))) }
        let publishSeconds = Date().timeIntervalSince(start)
        // Liveness bounds, generous on purpose (timings belong to Benchmarks/).
        #expect(publishSeconds < 5, "publishing \(count) events took \(publishSeconds) s")
        #expect(readerDone.wait(timeout: .now() + 20) == .success)
        #expect(received.value == count)
        // The stuck one is cut off by its send timeout; the reader stays.
        #expect(eventuallyTrue(10) { bus.subscriberCount == 1 })
        #expect(server.connectionCount == 1)
    }

    @Test func stuckSubscriberIsCutOffAtItsQueueBound() throws {
        let fixture = try EventServerFixture(epoch: "e", ringCapacity: 16) { options in
            options.queueCapacity = 16
            options.sendTimeout = 60   // only the queue bound can cut it off
        }
        defer { fixture.stop() }
        let (path, bus) = (fixture.path, fixture.bus)
        let stuck = try EventClient(path: path)
        try stuck.send(SubscribeRequest())
        #expect(eventuallyTrue { bus.subscriberCount == 1 })
        var published = 0
        while bus.subscriberCount == 1 && published < 1_000_000 {
            bus.publish(.actionStart(eventAction("a\(published)")))
            published += 1
        }
        #expect(bus.subscriberCount == 0)
        #expect(published > fixture.server.options.queueCapacity)
        // hello and what the kernel buffered are still readable, then end of stream.
        var lines = 0
        while let _ = try stuck.readLine(timeout: 10) { lines += 1 }
        #expect(!stuck.timedOut)
        #expect(lines >= 1 && lines <= published + 1)
    }

    @Test func reconnectWithSinceGetsEveryMissedEventOnce() throws {
        let fixture = try EventServerFixture(epoch: "e", ringCapacity: 256)
        defer { fixture.stop() }
        let (path, bus) = (fixture.path, fixture.bus)

        var lastSeq = 0
        do {
            let first = try EventClient(path: path)
            _ = try first.readLine(timeout: 5)
            try first.send(SubscribeRequest())
            #expect(eventuallyTrue { bus.subscriberCount == 1 })
            for i in 0..<5 { bus.publish(.actionStart(eventAction("a\(i)"))) }
            for _ in 0..<5 { lastSeq = eventJSON(try #require(try first.readLine(timeout: 5)))["seq"] as? Int ?? -1 }
        }
        #expect(eventuallyTrue { bus.subscriberCount == 0 })
        for i in 5..<20 { bus.publish(.actionUpdate(eventAction("a\(i)"))) }
        let second = try EventClient(path: path)
        _ = try second.readLine(timeout: 5)
        try second.send(SubscribeRequest(since: ResumePoint(epoch: "e", seq: UInt64(lastSeq))))
        #expect(eventuallyTrue { bus.subscriberCount == 1 })
        for i in 20..<25 { bus.publish(.actionEnd(eventAction("a\(i)"))) }
        var seqs: [Int] = []
        for _ in 0..<20 { seqs.append(eventJSON(try #require(try second.readLine(timeout: 5)))["seq"] as? Int ?? -1) }
        #expect(lastSeq == 5)
        #expect(seqs == Array(6...25))
    }

    @Test func malformedAndOversizedLinesGetAnErrorAndDefaults() throws {
        let fixture = try EventServerFixture(epoch: "e", ringCapacity: 16)
        defer { fixture.stop() }
        let (path, bus) = (fixture.path, fixture.bus)

        let malformed = try EventClient(path: path)
        try malformed.sendRaw("{\"op\": nope\n")
        let oversized = try EventClient(path: path)
        try oversized.sendRaw(String(repeating: "x", count: 5000))
        for client in [malformed, oversized] {
            #expect(eventJSON(try #require(try client.readLine(timeout: 5)))["type"] as? String == "hello")
            let error = eventJSON(try #require(try client.readLine(timeout: 5)))
            #expect(error["type"] as? String == "error")
            #expect((error["message"] as? String ?? "").contains("subscribe line"))
        }
        #expect(eventuallyTrue { bus.subscriberCount == 2 })
        bus.publish(.actionStart(eventAction("a", camera: "yard")))
        for client in [malformed, oversized] {
            #expect(eventJSON(try #require(try client.readLine(timeout: 5)))["type"] as? String == "action.start")
        }
    }

    @Test func clientsThatVanishDoNotHurtTheServer() throws {
        let fixture = try EventServerFixture(epoch: "e", ringCapacity: 16)
        defer { fixture.stop() }
        let (path, bus, server) = (fixture.path, fixture.bus, fixture.server)
        for i in 0..<20 {
            let client = try EventClient(path: path)
            if i % 2 == 0 { try client.sendRaw("{\"op\":\"subscribe\"") }   // half a line, then gone
        }
        #expect(eventuallyTrue { server.connectionCount == 0 && bus.subscriberCount == 0 })
        bus.publish(.actionStart(eventAction("a")))
        let client = try EventClient(path: path)
        try client.send(SubscribeRequest(since: ResumePoint(epoch: "e", seq: 0)))
        #expect(eventJSON(try #require(try client.readLine(timeout: 5)))["type"] as? String == "hello")
        #expect(eventJSON(try #require(try client.readLine(timeout: 5)))["seq"] as? Int == 1)
    }

    @Test func connectionsBeyondTheLimitGetAnError() throws {
        let fixture = try EventServerFixture(epoch: "e", ringCapacity: 4) { options in
            options.maxConnections = 2
        }
        defer { fixture.stop() }
        let (path, bus) = (fixture.path, fixture.bus)
        let first = try EventClient(path: path), second = try EventClient(path: path)
        for client in [first, second] { try client.send(SubscribeRequest()) }
        #expect(eventuallyTrue { bus.subscriberCount == 2 })
        let third = try EventClient(path: path)
        let refused = eventJSON(try #require(try third.readLine(timeout: 5)))
        #expect(refused["type"] as? String == "error")
        #expect((refused["message"] as? String ?? "").contains("too many subscribers"))
        #expect(try third.readLine(timeout: 5) == nil && !third.timedOut)
    }

    @Test func clearErrorsForBadPaths() throws {
        let dir = eventSocketDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bus = EventBus(epoch: "e", ringCapacity: 4)
        func bindError(_ path: String) -> SocketError? {
            do { let s = try SocketServer(path: path, bus: bus, hello: eventTestHello); s.stop(); return nil }
            catch let e as SocketError { return e } catch { return nil }
        }
        let missing = bindError(dir.appendingPathComponent("nope/ev.sock").path)
        #expect(missing?.kind == .missingDirectory)
        #expect(missing?.description.contains("does not exist") == true)
        #expect(bindError(dir.path + "/" + String(repeating: "s", count: 120))?.kind == .pathTooLong(limit: 107))
        let file = dir.appendingPathComponent("plain").path
        #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        #expect(bindError(file)?.kind == .notASocket)
        #expect(FileManager.default.fileExists(atPath: file))

        // A running server's socket is not stolen.
        let live = dir.appendingPathComponent("live.sock").path
        let server = try SocketServer(path: live, bus: bus, hello: eventTestHello, options: eventServerOptions())
        #expect(bindError(live)?.kind == .addressInUse)
        server.stop()

        if getuid() != 0 {
            let readOnly = dir.appendingPathComponent("ro")
            try FileManager.default.createDirectory(at: readOnly, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o555])
            #expect(bindError(readOnly.appendingPathComponent("ev.sock").path)?.kind == .unwritableDirectory)
        }
    }

    @Test func staleSocketReplacedModeAppliedAndFileRemovedOnStop() throws {
        let dir = eventSocketDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ev.sock").path
        // A stale socket file: bound, never listened, closed.
        let fd = try SocketSystem.unixSocket(path)
        try SocketSystem.bind(fd, path)
        SocketSystem.close(fd)
        #expect(SocketSystem.fileKind(path) == .socket)

        let bus = EventBus(epoch: "e", ringCapacity: 4)
        var options = eventServerOptions()
        options.mode = 0o660
        let server = try SocketServer(path: path, bus: bus, hello: eventTestHello, options: options)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o660)
        let client = try EventClient(path: path)
        try client.send(SubscribeRequest())
        _ = try client.readLine(timeout: 5)
        #expect(eventuallyTrue { bus.subscriberCount == 1 })
        bus.publish(.actionEnd(eventAction("last")))
        server.stop()
        #expect(SocketSystem.fileKind(path) == .missing)
        // The final line was flushed before the connection closed.
        let last = eventJSON(try #require(try client.readLine(timeout: 5)))
        #expect(last["action_id"] as? String == "last")
        #expect(try client.readLine(timeout: 5) == nil && !client.timedOut)
        #expect(throws: SocketError.self) { try EventClient(path: path) }
    }

    @Test func socketActivationNeedsThisPid() {
        #expect(SocketActivation.listeningFD(environment: [:]) == nil)
        #expect(SocketActivation.listeningFD(environment: ["LISTEN_PID": "1", "LISTEN_FDS": "1"]) == nil || getpid() == 1)
    }

    @Test func adoptsAListeningFD() throws {
        let dir = eventSocketDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("act.sock").path
        let fd = try SocketSystem.unixSocket(path)
        try SocketSystem.bind(fd, path)
        try SocketSystem.listen(fd, path)
        let bus = EventBus(epoch: "e", ringCapacity: 4)
        let server = try SocketServer(listeningFD: fd, path: path, bus: bus, hello: eventTestHello, options: eventServerOptions())
        let client = try EventClient(path: path)
        #expect(eventJSON(try #require(try client.readLine(timeout: 5)))["type"] as? String == "hello")
        server.stop()
        // systemd owns the file.
        #expect(SocketSystem.fileKind(path) == .socket)
    }
}

final class EventTestCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}

/// Hands a value to one other thread that alone uses it from then on.
struct EventTestBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Runs `python3 args…`; nil when python3 cannot be started.
func runEventPython(_ args: [String]) -> (status: Int32, output: String)? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3"] + args
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

let pythonHasJSONSchema = runEventPython(["-c", "import jsonschema"])?.status == 0

/// A real subscriber in another process (python3) reads the socket and validates every line
/// against docs/events.schema.json.
@Suite(.serialized, .enabled(if: pythonHasJSONSchema, "needs python3 with jsonschema"))
struct EventSchemaTests {
    static let schema = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/events.schema.json").path

    static let subscriber = """
    import json, socket, sys, jsonschema
    sock_path, schema_path, extra_path = sys.argv[1:4]
    validator = jsonschema.Draft202012Validator(json.load(open(schema_path)))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    f = s.makefile("rb")
    lines = [f.readline()]
    s.sendall(b'{"op":"subscribe","since":{"epoch":"older-run","seq":3}}\\n')
    while True:
        line = f.readline()
        if not line: break
        lines.append(line)
        if json.loads(line)["type"] == "stats": break
    lines += open(extra_path, "rb").read().splitlines()
    types = []
    for line in lines:
        obj = json.loads(line)
        errors = list(validator.iter_errors(obj))
        if errors:
            print("INVALID", line.eventJSON().strip(), errors[0].message); sys.exit(1)
        types.append(obj["type"])
    print(" ".join(types))
    """

    @Test func everyLineTypeMatchesTheSchema() throws {
        let fixture = try EventServerFixture(epoch: "run-9", ringCapacity: 16)
        defer { fixture.stop() }
        let (path, bus) = (fixture.path, fixture.bus)

        // Session lines the stream does not produce here: written to a file for the script.
        let dropping = bus.subscribe(queueCapacity: 1)
        bus.publish(.actionUpdate(eventAction("x")))
        bus.publish(.actionUpdate(eventAction("x")))
        guard case .line(let dropped) = dropping.next(timeout: 0) else { Issue.record("no dropped line"); return }
        dropping.cancel()
        let extra = fixture.directory.appendingPathComponent("extra.ndjson")
        try (dropped + bus.errorLine("subscribe line is not a JSON object")).write(to: extra, atomically: true, encoding: .utf8)

        let published = DispatchSemaphore(value: 0)
        let busBox = EventTestBox(bus)
        Thread {
            let bus = busBox.value
            guard eventuallyTrue(10, { bus.subscriberCount == 1 }) else { published.signal(); return }
            bus.publish(.actionStart(eventAction("a")))
            var snapshotted = eventAction("a", score: 0.7)
            snapshotted.snapshot = .init(path: "/var/lib/m2clipd/snapshots/door/2023-11-14/a.jpg",
                                         frameTime: 1_700_000_002, score: 0.9)
            bus.publish(.actionUpdate(snapshotted))
            snapshotted.score = 0.1
            snapshotted.clip = .init(path: "/var/lib/m2clipd/clips/door/2023-11-14/a.mp4",
                                     startTime: 1_699_999_995, endTime: 1_700_000_008)
            bus.publish(.actionEnd(snapshotted))
            bus.publish(.cameraStatus(.init(camera: "door", status: .offline, reason: "end of stream")))
            bus.publish(.cameraStatus(.init(camera: "yard", status: .online, reason: nil)))
            bus.publish(.stats(.init(cameras: [.init(camera: "door", fpsIn: 25, fpsSampled: 8, fpsProcessed: 8,
                                                     skippedWindows: 0, droppedFrames: 2,
                                                     inferenceP50Ms: 31.5, inferenceP90Ms: 40)],
                                   snapshots: .init(written: 3, dropped: 0, failed: 1, deleted: 2),
                                   clips: .init(written: 1, dropped: 0, failed: 0, deleted: 0),
                                   history: EventHistory.Counters(stored: 5, writeFailures: 1, pending: 0, lost: 0, writing: true))))
            published.signal()
        }.start()
        let result = try #require(runEventPython(["-c", Self.subscriber, path, Self.schema, extra.path]))
        published.wait()
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines) ==
                "hello resync action.start action.update action.end camera.status camera.status stats dropped error")
    }
}
