import Dispatch
import FlyingFox
import FlyingSocks
import Foundation

/// `GET /metrics` (and HEAD) over HTTP/1.1 on the `metrics.listen` address; anything else is
/// 404 or 405, and a request that does not parse only closes its own connection. FlyingFox
/// parses HTTP and runs the connections as tasks on Swift's cooperative pool, apart from the
/// camera and inference threads.
final class MetricsServer: @unchecked Sendable {
    let listen: String
    private let server: HTTPServer
    private let running: Task<Void, Never>

    /// Binds the address before it returns, so a port in use stops the daemon at start.
    /// - Throws: `ConfigurationError` for `metrics.listen` (of `file`) when it cannot listen.
    init(configuration: DaemonConfiguration.Metrics, file: String, metrics: DaemonMetrics) throws {
        listen = configuration.listen
        func failure(_ message: String) -> ConfigurationError {
            ConfigurationError(file: file, field: "metrics.listen", "cannot listen on \(configuration.listen) (\(message))")
        }
        guard let (host, port) = configuration.address else { throw failure("not an address") }
        let handler = MetricsHandler(metrics: metrics)
        let server: HTTPServer
        do {
            if DaemonConfiguration.Metrics.family(of: host) == AF_INET6 {
                server = HTTPServer(address: try .inet6(ip6: host, port: UInt16(port)), timeout: 10,
                                    logger: .disabled, handler: handler)
            } else {
                server = HTTPServer(address: try .inet(ip4: host, port: UInt16(port)), timeout: 10,
                                    logger: .disabled, handler: handler)
            }
        } catch {
            throw failure("\(error)")
        }
        self.server = server
        // run() binds, then serves until stop(); whichever comes first, a bind failure or the
        // listening socket, ends the wait.
        let outcome = Outcome()
        running = Task {
            do {
                try await server.run()
            } catch {
                outcome.finish(Self.describe(error))
            }
        }
        Task {
            try? await server.waitUntilListening(timeout: 10)
            outcome.finish(await server.isListening ? nil : "not listening after 10 s")
        }
        if let problem = outcome.wait() {
            running.cancel()
            throw failure(problem)
        }
    }

    /// "bind: Address already in use" rather than the enum case.
    private static func describe(_ error: Error) -> String {
        guard let error = error as? FlyingSocks.SocketError, case .failed(let call, _, let message) = error else { return "\(error)" }
        return "\(call.lowercased()): \(message)"
    }

    /// Closes the port; connections in progress get `timeout` seconds to finish.
    func stop(timeout: Double = 1) {
        let done = DispatchSemaphore(value: 0)
        let server = self.server
        Task {
            await server.stop(timeout: timeout)
            done.signal()
        }
        _ = done.wait(timeout: .now() + timeout + 1)
        running.cancel()
    }

    /// The first of several results: nil for listening, else the problem.
    private final class Outcome: @unchecked Sendable {
        private let lock = NSCondition()
        private var result: String??

        func finish(_ problem: String?) {
            lock.withLock {
                if result == nil { result = .some(problem) }
                lock.broadcast()
            }
        }

        func wait() -> String? {
            lock.withLock {
                while result == nil { lock.wait() }
                return result!
            }
        }
    }
}

struct MetricsHandler: HTTPHandler {
    let metrics: DaemonMetrics

    func handleRequest(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard request.path == "/metrics" else { return HTTPResponse(statusCode: .notFound) }
        guard request.method == .GET || request.method == .HEAD else {
            return HTTPResponse(statusCode: .methodNotAllowed, headers: HTTPHeaders([HTTPHeader("Allow"): "GET, HEAD"]))
        }
        let body = request.method == .HEAD ? Data() : Data(metrics.exposition())
        return HTTPResponse(statusCode: .ok, headers: HTTPHeaders([.contentType: "text/plain; version=0.0.4; charset=utf-8"]),
                            body: body)
    }
}
