import Foundation
import Glibc
import NetworkTesting
import Testing
import Video
@testable import Daemon

// StreamFrameSource against real servers on 127.0.0.1: a Python process streaming MPEG-TS over
// HTTP at twice real time (killed, frozen with SIGSTOP, restarted on the same port), a port
// nobody listens on, and a socket that listens but never accepts.

/// Answers each GET with the file as a live MPEG-TS stream (no Content-Length), paced at
/// `bytes_per_second`, one thread per client. argv: file, port, bytes_per_second.
private let liveServer = """
import socket, sys, threading, time
data = open(sys.argv[1], 'rb').read()
rate = float(sys.argv[3])

def serve(client):
    try:
        request = b''
        while b'\\r\\n\\r\\n' not in request:
            chunk = client.recv(4096)
            if not chunk:
                return
            request += chunk
        client.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Type: video/mp2t\\r\\n\\r\\n')
        start, sent = time.monotonic(), 0
        while sent < len(data):
            client.sendall(data[sent:sent + 3760])
            sent += 3760
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    except OSError:
        pass
    finally:
        client.close()

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', int(sys.argv[2])))
server.listen(16)
while True:
    client, _ = server.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
"""

/// The live server as a subprocess.
private final class LiveServer {
    let server: ServerProcess

    init(_ fixture: StreamFixture, port: UInt16) throws {
        server = try ServerProcess(["python3", "-c", liveServer, fixture.path, "\(port)", "\(fixture.bytesPerSecond)"],
                                   port: port)
    }

    /// SIGKILL: the connections drop as when a camera loses power.
    func kill() { server.stop() }
    /// SIGSTOP / SIGCONT: connections stay open but nothing moves, as when a camera hangs.
    func freeze() { server.signal(SIGSTOP) }
    func thaw() { server.signal(SIGCONT) }
}

/// The phone fixture (2 s, 30 frames at 15 fps, 320×240) looped into a 40 s MPEG-TS by the
/// ffmpeg CLI, with the byte rate that plays it at twice real time: frames flow for the whole
/// test, and stream probing (20 frames) takes about 0.7 s.
private final class StreamFixture {
    static let seconds = 40.0
    let directory: URL
    let path: String
    let bytesPerSecond: Double

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-stream-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        path = directory.appendingPathComponent("live.ts").path
        let phone = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/video/phone_h264_rot90.mp4").path
        let ffmpeg = Process()
        ffmpeg.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        ffmpeg.arguments = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "\(Int(Self.seconds / 2) - 1)", "-i", phone,
                            "-c", "copy", "-f", "mpegts", path]
        try ffmpeg.run()
        ffmpeg.waitUntilExit()
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        try #require(ffmpeg.terminationStatus == 0 && size > 0, "ffmpeg could not write \(path)")
        bytesPerSecond = Double(size) / Self.seconds * 2
    }

    deinit { try? FileManager.default.removeItem(at: directory) }
}

/// What a source reported, in order.
private final class SourceLog: @unchecked Sendable {
    enum Entry {
        case status(CameraSourceStatus)
        case frame(CapturedFrame)
        case end(CameraSourceEnd)
    }

    private let lock = NSCondition()
    private var entries: [Entry] = []

    func add(_ entry: Entry) { lock.withLock { entries.append(entry); lock.broadcast() } }

    func start(_ source: StreamFrameSource) throws {
        try source.start(onFrame: { self.add(.frame($0)) }, onStatus: { self.add(.status($0)) },
                         onEnd: { self.add(.end($0)) })
    }

    var statuses: [CameraSourceStatus] {
        lock.withLock { entries.compactMap { if case .status(let s) = $0 { s } else { nil } } }
    }

    /// Frames of each connection: those after each `online`.
    var connections: [[CapturedFrame]] {
        lock.withLock {
            var result: [[CapturedFrame]] = []
            for entry in entries {
                switch entry {
                case .status(.online): result.append([])
                case .frame(let frame): if !result.isEmpty { result[result.count - 1].append(frame) }
                default: break
                }
            }
            return result
        }
    }

    var end: CameraSourceEnd? { lock.withLock { entries.lazy.compactMap { if case .end(let e) = $0 { e } else { nil } }.first } }

    var count: Int { lock.withLock { entries.count } }

    /// Waits until `condition` holds or `seconds` pass; whether it held.
    func wait(_ seconds: Double, until condition: (SourceLog) -> Bool) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while !condition(self) {
            lock.lock()
            let woke = lock.wait(until: deadline)
            lock.unlock()
            if !woke { return condition(self) }
        }
        return true
    }
}

/// Slack on top of a deadline for thread scheduling on a loaded 2-core machine: a bound that
/// catches a missing deadline (which would wait 30 s or forever), not a speed measurement.
private let slack = 1.5

@Suite struct StreamFrameSourceTests {
    @Test func serverThatDiesAndComesBackGoesOfflineThenOnline() throws {
        let fixture = try StreamFixture()
        let port = closedPort()
        var server = try LiveServer(fixture, port: port)
        let source = StreamFrameSource(url: "http://viewer:s3cret@127.0.0.1:\(port)/live.ts", openTimeout: 5,
                                       readTimeout: 2, reconnectDelays: [0.2, 0.4])
        #expect(source.redactedURL == "http://127.0.0.1:\(port)/live.ts")
        let log = SourceLog()
        try log.start(source)
        defer { source.stop() }
        #expect(log.wait(15) { $0.statuses == [.online] && $0.connections[0].count >= 5 })

        server.kill()
        #expect(log.wait(10) { $0.statuses.count == 2 })
        guard case .offline(let reason) = log.statuses.last else {
            Issue.record("not offline after the server died: \(log.statuses)")
            return
        }
        #expect(reason.hasPrefix("video http://127.0.0.1:\(port)/live.ts: "), "\(reason)")
        #expect(!reason.contains("s3cret") && !reason.contains("viewer"), "\(reason)")
        // Several refused reconnects (0.2 s, then every 0.4 s) go by without another status.
        usleep(1_000_000)
        #expect(log.statuses.count == 2, "\(log.statuses)")

        server = try LiveServer(fixture, port: port)
        #expect(log.wait(15) { $0.statuses.count == 3 && $0.connections[1].count >= 5 })
        let stoppedAt = monotonicNow()
        source.stop()
        #expect(log.wait(10) { $0.end != nil })
        #expect(monotonicNow() - stoppedAt < slack)
        #expect(log.end == .stopped)
        #expect(log.statuses == [.online, .offline(reason), .online])
        let settled = log.count
        usleep(300_000)
        #expect(log.count == settled, "nothing after onEnd")

        #expect(source.fps == 15)
        for frames in log.connections {
            #expect(frames.first?.sequence == 0)
            #expect(zip(frames, frames.dropFirst()).allSatisfy { $0.sequence < $1.sequence }, "\(frames.map(\.sequence))")
            #expect(zip(frames, frames.dropFirst()).allSatisfy { $0.monotonic <= $1.monotonic })
            // MPEG-TS has no display matrix: the remuxed frames are the coded 320×240.
            #expect(frames.allSatisfy { $0.image?.width == 320 && $0.image?.height == 240 })
            // No gaps or timestamp jumps in this stream: the sequence is the stream index.
            #expect(frames.allSatisfy { $0.sequence == $0.image?.index })
            #expect(frames.allSatisfy { abs($0.monotonic - monotonicNow()) < 60 && abs($0.wallClock - Date().timeIntervalSince1970) < 60 })
        }
    }

    @Test func unreachableServerIsReportedOnceAndJoinedWhenItStarts() throws {
        let fixture = try StreamFixture()
        let port = closedPort()
        let source = StreamFrameSource(url: "http://viewer:s3cret@127.0.0.1:\(port)/live.ts", openTimeout: 5,
                                       readTimeout: 2, reconnectDelays: [0.05, 0.1])
        let log = SourceLog()
        try log.start(source)
        defer { source.stop() }
        #expect(log.wait(10) { !$0.statuses.isEmpty })
        usleep(500_000) // several more refused attempts
        #expect(log.statuses == [.offline("video http://127.0.0.1:\(port)/live.ts: cannot connect (Connection refused)")])

        let server = try LiveServer(fixture, port: port)
        defer { server.kill() }
        #expect(log.wait(15) { $0.statuses.count == 2 && $0.connections[0].count >= 3 })
        source.stop()
        #expect(log.wait(10) { $0.end != nil })
        #expect(log.end == .stopped)
        #expect(log.statuses.dropFirst() == [.online])
    }

    @Test func frozenServerGoesOfflineAfterTheReadTimeout() throws {
        let fixture = try StreamFixture()
        let port = closedPort()
        let server = try LiveServer(fixture, port: port)
        let source = StreamFrameSource(url: "http://127.0.0.1:\(port)/live.ts", openTimeout: 5, readTimeout: 1,
                                       reconnectDelays: [0.1])
        let log = SourceLog()
        try log.start(source)
        defer { source.stop() }
        #expect(log.wait(15) { $0.statuses == [.online] && $0.connections[0].count >= 5 })

        server.freeze()
        let frozenAt = monotonicNow()
        #expect(log.wait(10) { $0.statuses.count == 2 })
        let elapsed = monotonicNow() - frozenAt
        #expect(log.statuses.last == .offline("video http://127.0.0.1:\(port)/live.ts: timed out (reading: no frame within 1 s)"))
        // What the server sent before it froze plays first; then one read deadline.
        #expect(elapsed >= 0.9 && elapsed < 1 + slack, "offline after \(elapsed) s")

        server.thaw()
        #expect(log.wait(15) { $0.statuses.count == 3 && $0.connections[1].count >= 3 })
        #expect(log.statuses.last == .online)
        source.stop()
        #expect(log.wait(10) { $0.end == .stopped })
    }

    @Test func stopDuringABlockedOpenEndsPromptly() throws {
        let listener = SilentListener()
        let source = StreamFrameSource(url: "rtsp://admin:pw@127.0.0.1:\(listener.port)/main", openTimeout: 30,
                                       readTimeout: 30)
        let log = SourceLog()
        try log.start(source)
        #expect(!log.wait(0.5) { $0.count > 0 }, "reported something without an answer from the server")
        let stoppedAt = monotonicNow()
        source.stop()
        #expect(log.wait(10) { $0.end != nil })
        let elapsed = monotonicNow() - stoppedAt
        #expect(log.end == .stopped)
        #expect(elapsed < slack, "onEnd \(elapsed) s after stop()")
        #expect(log.statuses.isEmpty, "a stop is not an outage: \(log.statuses)")
    }

    @Test func badURLThrowsAtStartWithoutCredentials() {
        let source = StreamFrameSource(url: "rtsp://admin:secret@cam:99999/main")
        let log = SourceLog()
        do {
            try log.start(source)
            Issue.record("started with port 99999")
            source.stop()
        } catch let error as VideoError {
            #expect(error.kind == .invalidURL)
            #expect("\(error)" == "video rtsp://cam:99999/main: not a stream URL (port \"99999\" is not a number from 1 to 65535)")
        } catch {
            Issue.record("not a VideoError: \(error)")
        }
        #expect(!log.wait(0.2) { $0.count > 0 }, "a source that did not start reports nothing")
    }
}

/// Clips of a network camera: the live MPEG-TS stream's H.264 packets into MP4 by stream copy.
@Suite struct StreamClipTests {
    /// A stretch of a connection, taken after the source stopped, is an MP4 that decodes
    /// (H.264, the coded 320×240), one frame per packet, starting at the keyframe at or before
    /// the first requested frame and reaching the last (within the packets' stamping jitter).
    @Test func h264StreamGivesClips() throws {
        let fixture = try StreamFixture()
        let port = closedPort()
        let server = try LiveServer(fixture, port: port)
        defer { server.kill() }
        let recorder = ClipRecorder(camera: "gate", maxSeconds: 30, maxBytes: 1 << 24)
        let source = StreamFrameSource(url: "http://127.0.0.1:\(port)/live.ts", openTimeout: 5, readTimeout: 2,
                                       clips: recorder)
        let log = SourceLog()
        try log.start(source)
        #expect(log.wait(20) { ($0.connections.first?.count ?? 0) >= 45 })
        source.stop()
        #expect(log.wait(10) { $0.end != nil })
        #expect(recorder.progress.ended && recorder.refused == nil)
        let frames = try #require(log.connections.first)
        let (from, to) = (frames[10].wallClock, frames[40].wallClock)

        let root = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-stream-clips-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let reported = NSLock()
        nonisolated(unsafe) var written: [ClipWriter.Written] = []
        let writer = ClipWriter(configuration: .init(preRollSeconds: 0, postRollSeconds: 0), directory: root,
                                log: { _, line in Issue.record("\(line)") },
                                written: { clip in reported.withLock { written.append(clip) } })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let clip = try #require(writer.submit(actionID: "gate-1", camera: "gate", start: from, end: to, recorder: recorder))
        #expect(writer.waitIdle(timeout: 10))
        let result = try #require(reported.withLock { written.first })
        // A packet's capture time is its presentation time at the offset of the latest frame
        // delivered before it was read: up to the decoder's delay off the frame's own stamp
        // (two frames, here where the stream plays at twice real time).
        let jitter = 2.0 / 15
        #expect(result.start <= from + jitter && result.end >= to - jitter && result.end <= to + 1e-6,
                "\(result) for \(from)...\(to)")
        let mp4 = try VideoFile(path: clip.path)
        #expect(mp4.codecName == "h264" && mp4.width == 320 && mp4.height == 240)
        #expect(mp4.frameCount == result.packets)
        let decoded = try mp4.frames(at: Array(0..<mp4.frameCount))
        #expect(decoded.allSatisfy { !$0.clamped })
    }
}
