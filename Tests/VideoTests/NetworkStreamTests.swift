import Foundation
import Glibc
import NetworkTesting
import Testing
@testable import Video

// Real servers on 127.0.0.1: Python's http.server, a Python server that sends a stream and then
// goes quiet with the connection open, and a socket that listens but never accepts (the
// kernel completes the handshake, so the client waits for an answer that never comes).

/// Answers each GET with the file (no Content-Length), then keeps the connection open and
/// silent: a camera that froze. argv: file, port.
private let stallingServer = """
import socket, sys
data = open(sys.argv[1], 'rb').read()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', int(sys.argv[2])))
server.listen(16)
held = []
while True:
    client, _ = server.accept()
    request = b''
    while b'\\r\\n\\r\\n' not in request:
        chunk = client.recv(4096)
        if not chunk:
            break
        request += chunk
    if b'\\r\\n\\r\\n' not in request:
        client.close()
        continue
    client.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Type: video/mp2t\\r\\n\\r\\n' + data)
    held.append(client)
"""

/// The fixture remuxed to MPEG-TS (the usual live container) by the ffmpeg CLI, played
/// `loops` times in a row: 2 s and 30 frames at 15 fps each.
private func transportStream(in directory: TemporaryDirectory, loops: Int) throws -> String {
    let output = directory.path("live.ts")
    let ffmpeg = Process()
    ffmpeg.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    ffmpeg.arguments = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "\(loops - 1)",
                        "-i", fixture("phone_h264_rot90.mp4"), "-c", "copy", "-f", "mpegts", output]
    try ffmpeg.run()
    ffmpeg.waitUntilExit()
    try #require(ffmpeg.terminationStatus == 0, "ffmpeg could not write \(output)")
    return output
}

/// Runs `body` on its own thread.
private final class Background<Value: Sendable>: @unchecked Sendable {
    private let lock = NSCondition()
    private var value: Value?

    init(_ body: @escaping @Sendable () -> Value) {
        Thread { [self] in
            let result = body()
            lock.withLock {
                value = result
                lock.broadcast()
            }
        }.start()
    }

    /// The result, or nil when `body` has not returned within `seconds`.
    func result(within seconds: Double) -> Value? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        lock.lock()
        defer { lock.unlock() }
        while value == nil, lock.wait(until: deadline) {}
        return value
    }
}

/// A time one thread sets and another reads.
private final class SharedTime: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Double?
    func set(_ time: Double) { lock.withLock { value = time } }
    func get() -> Double? { lock.withLock { value } }
}

/// The `VideoError` `body` throws, nil when it returns.
private func videoError(_ body: () throws -> Void) -> VideoError? {
    do {
        try body()
        return nil
    } catch let error as VideoError {
        return error
    } catch {
        Issue.record("not a VideoError: \(error)")
        return nil
    }
}

/// Slack on top of a deadline for thread scheduling on a loaded 2-core machine: a bound that
/// catches a missing deadline (which would wait 10 s or forever), not a speed measurement.
private let slack = 1.5

@Suite struct NetworkStreamTests {
    @Test func framesOverHTTPMatchDecodingTheFile() throws {
        let port = closedPort()
        let server = try ServerProcess(["python3", "-m", "http.server", "--bind", "127.0.0.1",
                                        "--directory", videoFixtures.path, "\(port)"], port: port)
        defer { server.stop() }
        let stream = try NetworkStream(url: StreamURL("http://viewer:pw@127.0.0.1:\(port)/phone_h264_rot90.mp4"))
        var received: [RGBFrame] = []
        while let frame = try stream.next() { received.append(frame) }
        #expect(try stream.next() == nil, "an ended stream stays ended")

        let file = try VideoFile(path: fixture("phone_h264_rot90.mp4"))
        let expected = try file.frames(at: Array(0..<file.frameCount))
        #expect(stream.fps == file.fps)
        #expect(stream.rotation == 90 && stream.codecName == "h264")
        #expect(received.count == expected.count)
        for (got, want) in zip(received, expected) {
            #expect(got.width == want.width && got.height == want.height, "frame \(want.index): \(got.width)x\(got.height)")
            #expect(got.index == want.sourceIndex && got.sourceIndex == want.sourceIndex, "frame \(want.index): index \(got.index)")
            #expect(abs(got.timestamp - want.timestamp) < 1e-9, "frame \(want.index): \(got.timestamp) s")
            #expect(got.rgb == want.rgb, "frame \(want.index): pixels differ from the local decode")
        }
    }

    /// Both orders of the two timeouts: the open deadline ends it either way, and says so (the
    /// RTSP demuxer would call its own socket timeout "invalid data").
    @Test(arguments: [("http", 1.0, 10.0), ("rtsp", 1.0, 10.0), ("http", 1.5, 0.5), ("rtsp", 1.5, 0.5)])
    func serverThatNeverAnswersTimesOutOpening(scheme: String, openTimeout: Double, readTimeout: Double) throws {
        let listener = SilentListener()
        let start = monotonicNow()
        let error = videoError {
            _ = try NetworkStream(url: StreamURL("\(scheme)://127.0.0.1:\(listener.port)/live"),
                                  openTimeout: openTimeout, readTimeout: readTimeout)
        }
        let elapsed = monotonicNow() - start
        #expect(error?.kind == .timedOut, "\(String(describing: error))")
        #expect(error?.description == "video \(scheme)://127.0.0.1:\(listener.port)/live: timed out "
                + "(connecting: no answer within \(openTimeout == 1 ? "1" : "1.5") s)")
        #expect(elapsed >= openTimeout - 0.1 && elapsed < openTimeout + slack, "gave up after \(elapsed) s")
    }

    @Test func cancelAbortsABlockedOpen() throws {
        let listener = SilentListener()
        let cancellation = StreamCancellation()
        let url = try StreamURL("http://127.0.0.1:\(listener.port)/live")
        let opening = Background { () -> VideoError? in
            videoError { _ = try NetworkStream(url: url, openTimeout: 30, readTimeout: 30, cancellation: cancellation) }
        }
        #expect(opening.result(within: 0.5) == nil, "opened, or failed, without an answer from the server")
        let cancelledAt = monotonicNow()
        cancellation.cancel()
        let error = opening.result(within: 10) ?? nil
        let elapsed = monotonicNow() - cancelledAt
        #expect(error?.kind == .cancelled, "\(String(describing: error))")
        #expect(elapsed < slack, "cancel took \(elapsed) s")
        #expect(videoError { _ = try NetworkStream(url: url, cancellation: cancellation) }?.kind == .cancelled,
                "a cancelled cancellation fails later opens at once")
    }

    @Test func stalledStreamTimesOutReading() throws {
        let directory = try TemporaryDirectory()
        let file = try transportStream(in: directory, loops: 3)
        let port = closedPort()
        let server = try ServerProcess(["python3", "-c", stallingServer, file, "\(port)"], port: port)
        defer { server.stop() }
        let stream = try NetworkStream(url: StreamURL("http://127.0.0.1:\(port)/live.ts"), openTimeout: 5, readTimeout: 1)
        var frames = 0, longestCall = 0.0
        var failure: VideoError?
        while failure == nil {
            let start = monotonicNow()
            failure = videoError {
                if try stream.next() != nil { frames += 1 }
            }
            longestCall = max(longestCall, monotonicNow() - start)
            if frames > 1000 { break }
        }
        #expect(failure?.kind == .timedOut, "\(String(describing: failure))")
        #expect(failure?.description.contains("http://127.0.0.1:\(port)/live.ts: timed out (reading") == true)
        #expect(frames == 90, "\(frames) of the 90 frames sent before the stall")
        #expect(longestCall >= 0.9 && longestCall < 1 + slack, "a read waited \(longestCall) s")
    }

    @Test func cancelAbortsABlockedRead() throws {
        let directory = try TemporaryDirectory()
        let file = try transportStream(in: directory, loops: 3)
        let port = closedPort()
        let server = try ServerProcess(["python3", "-c", stallingServer, file, "\(port)"], port: port)
        defer { server.stop() }
        let cancellation = StreamCancellation()
        let url = try StreamURL("http://127.0.0.1:\(port)/live.ts")
        let callStart = SharedTime()
        let reading = Background { () -> (frames: Int, error: VideoError?) in
            var frames = 0
            let error = videoError {
                let stream = try NetworkStream(url: url, openTimeout: 5, readTimeout: 30, cancellation: cancellation)
                while true {
                    callStart.set(monotonicNow())
                    guard try stream.next() != nil else { return }
                    frames += 1
                }
            }
            return (frames, error)
        }
        // Wait until a read has been blocked for 0.5 s: the served frames are used up.
        let deadline = monotonicNow() + 10
        while monotonicNow() < deadline, callStart.get().map({ monotonicNow() - $0 < 0.5 }) ?? true {
            usleep(20_000)
        }
        let cancelledAt = monotonicNow()
        cancellation.cancel()
        let outcome = reading.result(within: 10)
        let elapsed = monotonicNow() - cancelledAt
        #expect(outcome?.frames ?? 0 > 0)
        #expect(outcome?.error?.kind == .cancelled, "\(String(describing: outcome))")
        #expect(elapsed < slack, "cancel took \(elapsed) s")
    }

    @Test(arguments: ["http", "rtsp"])
    func refusedConnectionNamesTheURLWithoutCredentials(scheme: String) throws {
        let port = closedPort()
        let error = videoError {
            _ = try NetworkStream(url: StreamURL("\(scheme)://admin:hunter2@127.0.0.1:\(port)/cam?password=hunter2&ch=1"),
                                  openTimeout: 5, readTimeout: 5)
        }
        let message = error?.description ?? ""
        #expect(error?.kind == .connectionFailed, "\(message)")
        #expect(message == "video \(scheme)://127.0.0.1:\(port)/cam?password=***&ch=1: cannot connect (Connection refused)")
        #expect(!message.contains("hunter2") && !message.contains("admin"))
    }

    @Test func serverAnswersThatAreNotVideoAreNamed() throws {
        // 0.1 s of a 440 Hz tone as 8 kHz 16-bit mono WAV: a media stream without video.
        let samples = 800
        func u32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        func u16(_ v: Int) -> [UInt8] { (0..<2).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        var wav: [UInt8] = Array("RIFF".utf8) + u32(36 + samples * 2) + Array("WAVEfmt ".utf8) + u32(16)
        wav += u16(1) + u16(1) + u32(8000) + u32(16000) + u16(2) + u16(16) + Array("data".utf8) + u32(samples * 2)
        wav += (0..<samples).flatMap { u16(Int(3000 * sin(Double($0) * 2 * .pi * 440 / 8000)) & 0xFFFF) }
        let directory = try TemporaryDirectory()
        _ = try directory.write(wav, to: "tone.wav")
        let port = closedPort()
        let server = try ServerProcess(["python3", "-m", "http.server", "--bind", "127.0.0.1",
                                        "--directory", directory.url.path, "\(port)"], port: port)
        defer { server.stop() }

        let missing = videoError { _ = try NetworkStream(url: StreamURL("http://u:pw@127.0.0.1:\(port)/cam.ts")) }
        #expect(missing?.kind == .connectionFailed)
        #expect(missing?.description == "video http://127.0.0.1:\(port)/cam.ts: cannot connect (Server returned 404 Not Found)")
        let audio = videoError { _ = try NetworkStream(url: StreamURL("http://u:pw@127.0.0.1:\(port)/tone.wav")) }
        #expect(audio?.kind == .noVideoStream)
        #expect(audio?.description == "video http://127.0.0.1:\(port)/tone.wav: not a video: no video stream (streams: audio)")
    }

    @Test(arguments: [
        ("rtsp://admin:secret@cam.local/main", "rtsp://cam.local/main"),
        ("rtsp://admin:p@ss@10.0.0.7:554/h264", "rtsp://10.0.0.7:554/h264"), // unescaped @ in the password
        ("http://cam/snap.cgi?user=admin&PASSWORD=secret&pwd=x#top", "http://cam/snap.cgi?user=admin&PASSWORD=***&pwd=***#top"),
        ("rtsp://cam/clips/a@b", "rtsp://cam/clips/a@b"),
        ("admin:secret@cam/main", "cam/main"),
        ("udp://@:1234", "udp://:1234"),
    ])
    func redactingRemovesCredentials(url: String, shown: String) {
        #expect(StreamURL.redacting(url) == shown)
    }

    @Test(arguments: [
        ("", "empty"),
        ("camera.local/stream", "no scheme"),
        ("rtsp://", "nothing after rtsp://"),
        ("rtsp://cam/my stream", "spaces"),
        ("1rtsp://cam/main", "not a URL scheme"),
        ("http://:8080/live.ts", "no host"),
        ("rtsp://admin:secret@cam:99999/main", "port \"99999\""),
        ("http://[::1/live.ts", "unclosed ["),
        ("rtps://admin:secret@cam/main", "no \"rtps\" protocol"),
    ])
    func badURLsAreRejectedBeforeConnecting(url: String, reason: String) {
        let error = videoError { _ = try StreamURL(url) }
        let message = error?.description ?? ""
        #expect(error?.kind == .invalidURL, "\(url): \(message)")
        #expect(message.contains("not a stream URL") && message.contains(reason), "\(url): \(message)")
        #expect(!message.contains("secret"), "\(message)")
    }

    @Test(arguments: ["rtsp://admin:pw@cam/main", "HTTP://cam:8080/live.ts", "https://[::1]:8443/live",
                      "udp://@:1234", "tcp://10.0.0.7:5000", "rtmp://server/live/key"])
    func goodURLsParse(url: String) throws {
        let parsed = try StreamURL(url)
        #expect(parsed.string == url)
        #expect(parsed.scheme == String(url.prefix { $0 != ":" }).lowercased())
        #expect(parsed.redacted == StreamURL.redacting(url))
    }

    @Test func protocolOptionsBoundEveryWaitAndSuitTheScheme() throws {
        func options(_ url: String) throws -> [String: String] {
            let pairs = NetworkStream.protocolOptions(for: try StreamURL(url), socketTimeout: 2.5)
            return Dictionary(pairs.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        }
        let rtsp = try options("rtsp://cam/main")
        #expect(rtsp["rtsp_transport"] == "tcp" && rtsp["timeout"] == "2500000" && rtsp["rw_timeout"] == "2500000")
        let http = try options("http://cam/live.ts")
        #expect(http["timeout"] == "2500000" && http["rw_timeout"] == "2500000")
        #expect(http["reconnect"] == "1" && http["reconnect_streamed"] == "1" && http["reconnect_delay_max"] == "2")
        // rtmp's "timeout" would make it listen for a connection instead of connecting.
        let rtmp = try options("rtmp://server/live/key")
        #expect(rtmp["timeout"] == nil && rtmp["rw_timeout"] == "2500000")
    }
}
