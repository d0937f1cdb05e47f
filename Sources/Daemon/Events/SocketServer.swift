import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Serves an `EventBus` on a Unix stream socket, one NDJSON line per event.
///
/// Per connection: `hello`; then the server waits up to `subscribeWait` for one subscribe line
/// (at most `maxLineBytes`). A malformed or oversized line is answered with an `error` line and
/// the connection stays open with the default filter (everything); nothing the client sends
/// after that is read. Without `since`, the subscription resumes from the `latest_seq` of its
/// `hello`, so events published while the server waited for the line are not lost.
/// A writer thread then drains the subscriber's bounded queue with blocking sends limited by
/// `SO_SNDTIMEO` (`sendTimeout`): a client that stops reading is disconnected, either when a
/// send times out or when its queue overflows. The publisher never waits on a client.
public final class SocketServer: @unchecked Sendable {
    public struct Options: Sendable {
        /// chmod of the socket file after bind (e.g. 0o660); nil keeps the umask's.
        public var mode: mode_t?
        public var queueCapacity: Int = 1024
        public var sendTimeout: Double = 2
        public var subscribeWait: Double = 0.5
        public var maxLineBytes: Int = 4096
        /// How often an idle writer checks whether its client hung up (there is nothing to
        /// send that would fail).
        public var idleCheck: Double = 1
        /// Connections served at once (one thread each); more are sent an `error` line and closed.
        public var maxConnections: Int = 64
        /// How long `stop()` lets writers flush what is queued before closing connections.
        public var stopGrace: Double = 1
        public init(mode: mode_t? = nil) { self.mode = mode }
    }

    public let path: String
    public let bus: EventBus
    public let hello: DaemonEvent.Hello
    public let options: Options
    private let listenFD: Int32
    private let ownsPath: Bool
    private let lock = NSLock()
    private var stopping = false
    private var connections: [Int32: Subscription?] = [:]
    private let threads = DispatchGroup()

    /// Binds and listens at `path`. A stale socket file there (nobody listening) is replaced.
    /// - Throws: `SocketError` for a missing or unwritable directory, a path longer than
    ///   sun_path, a non-socket file at the path, a live daemon already listening, or a failed call.
    public init(path: String, bus: EventBus, hello: DaemonEvent.Hello, options: Options = Options()) throws {
        self.path = path; self.bus = bus; self.hello = hello; self.options = options
        _ = try SocketSystem.address(path)
        let dir = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        guard SocketSystem.isDirectory(dir) else {
            throw SocketError(kind: .missingDirectory, call: "bind", path: path,
                              message: "directory \(dir) does not exist")
        }
        guard SocketSystem.isWritableDirectory(dir) else {
            throw SocketError(kind: .unwritableDirectory, call: "bind", path: path,
                              message: "directory \(dir) is not writable")
        }
        switch SocketSystem.fileKind(path) {
        case .missing: break
        case .other:
            throw SocketError(kind: .notASocket, call: "bind", path: path,
                              message: "exists and is not a socket; refusing to replace it")
        case .socket:
            let probe = try SocketSystem.unixSocket(path)
            defer { SocketSystem.close(probe) }
            if (try? SocketSystem.connect(probe, path)) != nil {
                throw SocketError(kind: .addressInUse, call: "bind", path: path,
                                  message: "another process is listening on this socket")
            }
            SocketSystem.unlink(path)
        }
        let fd = try SocketSystem.unixSocket(path)
        do {
            try SocketSystem.bind(fd, path)
            if let mode = options.mode { try SocketSystem.chmod(path, mode: mode) }
            try SocketSystem.listen(fd, path)
            try SocketSystem.setNonBlocking(fd, path)
        } catch {
            SocketSystem.close(fd)
            throw error
        }
        listenFD = fd
        ownsPath = true
        startAcceptThread()
    }

    /// Serves on an already-listening socket (systemd socket activation, see `SocketActivation`).
    /// The socket file belongs to systemd and is not removed by `stop()`.
    public init(listeningFD fd: Int32, path: String, bus: EventBus, hello: DaemonEvent.Hello,
                options: Options = Options()) throws {
        self.path = path; self.bus = bus; self.hello = hello; self.options = options
        try SocketSystem.setNonBlocking(fd, path)
        listenFD = fd
        ownsPath = false
        startAcceptThread()
    }

    public var connectionCount: Int { lock.withLock { connections.count } }

    private func startAcceptThread() {
        threads.enter()
        let thread = Thread { [self] in
            acceptLoop()
            threads.leave()
        }
        thread.name = "m2clipd-accept"
        thread.start()
    }

    private func acceptLoop() {
        while !lock.withLock({ stopping }) {
            // Poll with a timeout so stop() is seen without closing the fd under accept.
            guard (try? SocketSystem.poll(listenFD, path, events: Int16(POLLIN), timeoutMs: 100)) == true else { continue }
            guard let conn = try? SocketSystem.accept(listenFD, path) else { continue }
            let accepted: Bool = lock.withLock {
                if stopping || connections.count >= options.maxConnections { return false }
                connections[conn] = .some(nil)
                return true
            }
            guard accepted else {
                if (try? SocketSystem.setSendTimeout(conn, path, seconds: 0.1)) != nil {
                    try? send(conn, bus.errorLine("too many subscribers (limit \(options.maxConnections)); try again later"))
                }
                SocketSystem.close(conn)
                continue
            }
            threads.enter()
            let thread = Thread { [self] in
                serve(conn)
                threads.leave()
            }
            thread.name = "m2clipd-subscriber"
            thread.start()
        }
    }

    private func send(_ fd: Int32, _ line: String) throws {
        try SocketSystem.sendAll(fd, path, Array(line.utf8))
    }

    /// Reads one line within `subscribeWait`: nil when none came, or the line's bytes, or an
    /// error message for an oversized line.
    private func readSubscribeLine(_ fd: Int32) -> Result<[UInt8], SubscribeLineError>? {
        let deadline = Date(timeIntervalSinceNow: options.subscribeWait)
        var line: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { return nil }
            guard (try? SocketSystem.poll(fd, path, events: Int16(POLLIN), timeoutMs: Int32(remaining * 1000) + 1)) == true else { continue }
            // Bytes after the newline are discarded: only one line is ever read.
            guard let n = try? SocketSystem.receive(fd, path, into: &buffer), n > 0 else { return nil }
            if let nl = buffer[0..<n].firstIndex(of: UInt8(ascii: "\n")) {
                line += buffer[0..<nl]
                if line.count > options.maxLineBytes { return .failure(oversized) }
                return .success(line)
            }
            line += buffer[0..<n]
            if line.count > options.maxLineBytes { return .failure(oversized) }
        }
    }

    private var oversized: SubscribeLineError {
        SubscribeLineError(message: "subscribe line longer than \(options.maxLineBytes) bytes")
    }

    private func serve(_ fd: Int32) {
        defer {
            // Under the lock, so stop() never shuts down a closed (and maybe reused) fd number.
            lock.withLock {
                _ = connections.removeValue(forKey: fd)
                SocketSystem.close(fd)
            }
        }
        let (helloLine, helloSeq) = bus.helloLine(hello)
        // hello first; the subscription starts from hello's seq so nothing is missed meanwhile.
        guard (try? SocketSystem.setSendTimeout(fd, path, seconds: options.sendTimeout)) != nil,
              (try? send(fd, helloLine)) != nil else { return }
        var request = SubscribeRequest()
        switch readSubscribeLine(fd) {
        case .none: break
        case .success(let bytes)?:
            switch SubscribeRequest.parse(bytes) {
            case .success(let r): request = r
            case .failure(let e): guard (try? send(fd, bus.errorLine(e.message))) != nil else { return }
            }
        case .failure(let e)?:
            guard (try? send(fd, bus.errorLine(e.message))) != nil else { return }
        }
        let since = request.since ?? ResumePoint(epoch: bus.epoch, seq: helloSeq)
        let sub = bus.subscribe(filter: request.filter, since: since, queueCapacity: options.queueCapacity)
        defer { sub.cancel() }
        let stillServing: Bool = lock.withLock {
            if stopping { return false }
            connections[fd] = sub
            return true
        }
        if !stillServing { sub.finishOnStop() }
        while true {
            switch sub.next(timeout: options.idleCheck) {
            case .line(let line):
                do { try send(fd, line) } catch { return }
            case .timedOut:
                if peerHungUp(fd) { return }
            case .closed:
                return
            }
        }
    }

    /// True when the client closed its end. Anything it sent after its subscribe line is
    /// read and ignored.
    private func peerHungUp(_ fd: Int32) -> Bool {
        guard let readable = try? SocketSystem.poll(fd, path, events: Int16(POLLIN), timeoutMs: 0) else { return true }
        guard readable else { return false }
        var scratch = [UInt8](repeating: 0, count: 4096)
        guard let n = try? SocketSystem.receive(fd, path, into: &scratch) else { return true }
        return n == 0
    }

    /// Closes the listener, lets each subscriber's writer flush what is queued for up to
    /// `options.stopGrace` seconds, closes the connections and removes the socket file
    /// (unless the socket came from systemd). Call it once the server is no longer needed: the
    /// accept thread keeps the server alive until then. A second call does nothing.
    public func stop() {
        let (subs, alreadyStopped): ([Subscription], Bool) = lock.withLock {
            defer { stopping = true }
            return (connections.values.compactMap { $0 }, stopping)
        }
        if alreadyStopped { return }
        for sub in subs { sub.finishOnStop() }
        if threads.wait(timeout: .now() + options.stopGrace) == .timedOut {
            // Wake writers blocked in send, and handshakes still waiting for a line.
            lock.withLock { for fd in connections.keys { SocketSystem.shutdownBoth(fd) } }
            for sub in subs { sub.cancel() }
            threads.wait()
        }
        SocketSystem.close(listenFD)
        if ownsPath { SocketSystem.unlink(path) }
    }
}
