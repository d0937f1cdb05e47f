#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A snapshot file that could not be written: the call, the file and the errno.
public struct SnapshotWriteError: Error, CustomStringConvertible, Equatable {
    public var call: String
    public var path: String
    public var code: Int32
    public var description: String { "\(path): \(call) failed: \(String(cString: strerror(code))) (errno \(code))" }
}

/// The system calls that put a snapshot on disk, as a seam: tests script a full disk through
/// `write` (ENOSPC part-way) and check that no torn file is left behind.
struct SnapshotFileSystem: Sendable {
    /// open(2) with O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode 0640.
    var open: @Sendable (String) -> Int32 = { Glibc.open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640) }
    /// write(2): bytes written, or -1 with errno.
    var write: @Sendable (Int32, UnsafeRawPointer, Int) -> Int = { Glibc.write($0, $1, $2) }
    var fsync: @Sendable (Int32) -> Int32 = { Glibc.fsync($0) }
    var close: @Sendable (Int32) -> Int32 = { Glibc.close($0) }
    var rename: @Sendable (String, String) -> Int32 = { Glibc.rename($0, $1) }
    var unlink: @Sendable (String) -> Int32 = { Glibc.unlink($0) }

    static let system = SnapshotFileSystem()

    /// The temporary name `path` is written under first: hidden, in the same directory (so
    /// the rename stays on one file system), and recognisable for retention to clear after a
    /// crash.
    static func temporaryPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".tmp").path
    }

    /// Writes `bytes` to `path` so that readers see the old file or the whole new one, never
    /// part: a temporary file, fsync, rename over `path`, fsync of the directory (created,
    /// with its parents, when missing). On failure the temporary file is removed and `path` is
    /// left as it was.
    func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        let temporary = Self.temporaryPath(for: path)
        func failure(_ call: String) -> SnapshotWriteError { SnapshotWriteError(call: call, path: path, code: errno) }
        func retrying(_ call: String, _ body: () -> Int) throws -> Int {
            while true {
                let result = body()
                if result >= 0 { return result }
                if errno != EINTR { throw failure(call) }
            }
        }
        _ = unlink(temporary) // a leftover of a crash; ENOENT is the usual answer
        let fd = Int32(try retrying("open") { Int(open(temporary)) })
        do {
            try bytes.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = try retrying("write") { write(fd, raw.baseAddress! + done, raw.count - done) }
                    // write(2) returning 0 for a positive count means no progress is possible.
                    if n == 0 { errno = ENOSPC; throw failure("write") }
                    done += n
                }
            }
            _ = try retrying("fsync") { Int(fsync(fd)) }
        } catch {
            _ = close(fd)
            _ = unlink(temporary)
            throw error
        }
        // close can report a deferred write error (NFS); the file is not trusted then.
        guard close(fd) == 0 || errno == EINTR else {
            let error = failure("close")
            _ = unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = failure("rename")
            _ = unlink(temporary)
            throw error
        }
        let directory = Glibc.open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            _ = close(directory)
        }
    }
}
