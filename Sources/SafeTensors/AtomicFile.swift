#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file that could not be replaced: which file, and which step failed with what.
public struct AtomicFileError: Error, Equatable, CustomStringConvertible, Sendable {
    public var path: String
    /// E.g. "cannot write temporary file /x/.a.jpg.tmp-12-3f: No space left on device".
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// Files replaced whole or not at all, for everything m2clip writes that a crash, a kill or a
/// full disk must not tear (model files, snapshots, clips): readers see the old file or the
/// whole new one.
///
/// The bytes go to a temporary file beside the target (`.BASE.tmp-PID-RANDOM`: one
/// filesystem, so rename(2) is atomic; the writer's pid tells a later write whether it is a
/// leftover), then fsync, rename over the target, fsync of the directory. On failure the
/// temporary file is removed and the target is left as it was. Every call goes through
/// `FileCalls`, so tests script failures.
public enum AtomicFile {
    /// Writes `parts`, one after the other, as the new content of `path` (its directory must
    /// exist). With `removingLeftovers`, leftovers of earlier writes of `path` whose process
    /// died are removed first and announced through `WriteNotices` (a directory listing per
    /// write; a caller whose directory is swept otherwise passes false).
    public static func write(_ parts: [[UInt8]], to path: String, removingLeftovers: Bool = true,
                             calls: FileCalls = .live) throws(AtomicFileError) {
        func failure(_ message: String) -> AtomicFileError { AtomicFileError(path: path, message: message) }
        let (directory, base) = splitPath(path)
        guard !base.isEmpty, base != ".", base != ".." else {
            throw failure("path names a directory, expected a file name")
        }
        for leftover in removingLeftovers ? removeLeftovers(of: path, calls: calls) : [] {
            WriteNotices.post("\(path): removed \(leftover), the partial file of an earlier write that was "
                + "interrupted (process killed or machine down); \(base) itself was not touched by it")
        }

        var temporary = ""
        var fd: Int32 = -1
        for attempt in 1...16 {
            let suffix = String(UInt64.random(in: .min ... .max), radix: 16)
            temporary = joinPath(directory, ".\(base).tmp-\(currentProcessID)-\(suffix)")
            switch calls.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666) {
            case .success(let opened):
                fd = opened
            case .failure(let errno) where errno.code == EEXIST && attempt < 16:
                continue
            case .failure(let errno):
                throw failure("cannot create a temporary file in \(directory): \(errno)")
            }
            break
        }

        var isOpen = true
        do throws(AtomicFileError) {
            for part in parts { try writeAll(part, to: fd, calls: calls, failure: { failure("cannot write temporary file \(temporary): \($0)") }) }
            if case .failure(let errno) = calls.fsync(fd) {
                throw failure("cannot fsync temporary file \(temporary): \(errno)")
            }
            isOpen = false
            if case .failure(let errno) = calls.close(fd) {
                throw failure("cannot close temporary file \(temporary): \(errno)")
            }
            if case .failure(let errno) = calls.rename(temporary, path) {
                throw failure("cannot rename temporary file \(temporary) into place: \(errno)")
            }
        } catch {
            if isOpen { _ = calls.close(fd) }
            _ = calls.unlink(temporary)
            throw error
        }

        // The rename is only durable once the directory entry is on disk.
        if case .failure(let errno) = syncDirectory(directory) {
            throw failure("written, but cannot fsync directory \(directory): \(errno)")
        }
    }

    /// Whether `name` (a file name, no directory) is the temporary file of an `AtomicFile` write.
    public static func isTemporary(_ name: String) -> Bool {
        name.hasPrefix(".") && name.contains(".tmp-")
    }

    /// Removes the temporary files that writes of `path` left behind when their process died
    /// mid-write (`.BASE.tmp-PID-…` whose PID no longer runs) and returns their names. The file at
    /// `path` is never torn by such a write: it is only replaced, by rename(2), once whole.
    @discardableResult
    public static func removeLeftovers(of path: String, calls: FileCalls = .live) -> [String] {
        let (directory, base) = splitPath(path)
        let prefix = ".\(base).tmp-"
        return directoryEntries(directory).filter { name in
            guard name.hasPrefix(prefix) else { return false }
            let rest = name.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]), pid > 0,
                  !processExists(pid) else { return false }
            return (try? calls.unlink(joinPath(directory, name)).get()) != nil
        }.sorted()
    }

    /// write(2) until all of `bytes` is written; `failure` builds the error from the cause.
    private static func writeAll(_ bytes: [UInt8], to fd: Int32, calls: FileCalls,
                                 failure: (String) -> AtomicFileError) throws(AtomicFileError) {
        // write(2) moves at most about 2 GiB per call on Linux; ask for 1 GiB at a time.
        let chunk = 1 << 30
        let result: Result<Void, AtomicFileError> = bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let end = min(buffer.count, written + chunk)
                switch calls.write(fd, UnsafeRawBufferPointer(rebasing: buffer[written..<end])) {
                case .success(let count) where count > 0:
                    written += count
                case .success:
                    return .failure(failure("write returned 0"))
                case .failure(let errno):
                    return .failure(failure("\(errno)"))
                }
            }
            return .success(())
        }
        try result.get()
    }
}

/// Where the writer reports what it found and cleaned up (a leftover of an interrupted write);
/// the CLI prints these. Without a handler they are dropped.
public enum WriteNotices {
    private static let handler = LockedHandler()

    /// Replaces the handler (e.g. once at start: print to stderr).
    public static func setHandler(_ body: (@Sendable (String) -> Void)?) { handler.set(body) }

    static func post(_ message: String) { handler.get()?(message) }
}

/// A handler slot behind a pthread mutex (this module does not import Foundation).
private final class LockedHandler: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var body: (@Sendable (String) -> Void)?

    init() { pthread_mutex_init(&mutex, nil) }

    func set(_ new: (@Sendable (String) -> Void)?) {
        pthread_mutex_lock(&mutex)
        body = new
        pthread_mutex_unlock(&mutex)
    }

    func get() -> (@Sendable (String) -> Void)? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body
    }
}
