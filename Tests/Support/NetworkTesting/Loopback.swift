import Foundation
import Glibc

// Loopback network helpers shared by the network-stream tests of Video and Daemon: sockets on
// 127.0.0.1, ports that refuse, listeners that never answer, server subprocesses.

/// Seconds on CLOCK_MONOTONIC.
public func monotonicNow() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// A TCP socket bound to 127.0.0.1 on a port the kernel picks; listening when `backlog` is given.
public func loopbackSocket(backlog: Int32?) -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0, "socket: \(String(cString: strerror(errno)))")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    precondition(bound, "bind: \(String(cString: strerror(errno)))")
    if let backlog { precondition(listen(fd, backlog) == 0, "listen: \(String(cString: strerror(errno)))") }
    return (fd, UInt16(bigEndian: address.sin_port))
}

/// A port nothing listens on: connecting to it is refused.
public func closedPort() -> UInt16 {
    let (fd, port) = loopbackSocket(backlog: nil)
    close(fd)
    return port
}

public func acceptsConnections(port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// Runs `executable` to its end; its exit status and what it wrote to stdout and stderr.
public func runToEnd(_ executable: String, _ arguments: [String], in directory: URL? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// Listens and never accepts.
public final class SilentListener {
    public let fd: Int32
    public let port: UInt16
    public init() { (fd, port) = loopbackSocket(backlog: 16) }
    deinit { close(fd) }
}

/// A server subprocess (through /usr/bin/env), ready once its port accepts connections; killed
/// when released.
public final class ServerProcess {
    public struct Failure: Error, CustomStringConvertible { public let description: String }
    public let process = Process()

    public init(_ arguments: [String], port: UInt16) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = monotonicNow() + 10
        while !acceptsConnections(port: port) {
            guard process.isRunning, monotonicNow() < deadline else {
                stop()
                throw Failure(description: "\(arguments.prefix(2)) is not listening on port \(port)")
            }
            usleep(20_000)
        }
    }

    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Sends `signal` to the server (SIGSTOP, SIGCONT).
    public func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    deinit { stop() }
}

