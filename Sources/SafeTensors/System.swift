// Every system call of the module goes through this file: EINTR is retried here, errno is
// captured here, and the writer takes its calls from a `FileCalls` value so tests can script
// failures (ENOSPC in the middle of a write, a failing fsync or rename).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An errno value captured right after a failing call.
public struct Errno: Error, Equatable, CustomStringConvertible, Sendable {
    public var code: Int32

    public init(code: Int32) { self.code = code }

    /// `strerror(3)` text, e.g. "No space left on device".
    public var description: String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    static var current: Errno { Errno(code: errno) }
}

/// Retries `body` while it fails with EINTR; any other failure becomes an `Errno`.
@inline(__always)
private func retryingOnEINTR<T: BinaryInteger>(_ body: () -> T) -> Result<T, Errno> {
    while true {
        let result = body()
        if result != -1 { return .success(result) }
        if errno != EINTR { return .failure(.current) }
    }
}

/// The calls `AtomicFile` makes, as replaceable closures. `live` is the real thing.
public struct FileCalls: Sendable {
    /// open(2) with a creation mode.
    public var open: @Sendable (_ path: String, _ flags: Int32, _ mode: mode_t) -> Result<Int32, Errno>
    /// One write(2); may write fewer bytes than asked.
    public var write: @Sendable (_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno>
    /// fsync(2).
    public var fsync: @Sendable (_ fd: Int32) -> Result<Void, Errno>
    /// close(2).
    public var close: @Sendable (_ fd: Int32) -> Result<Void, Errno>
    /// rename(2).
    public var rename: @Sendable (_ from: String, _ to: String) -> Result<Void, Errno>
    /// unlink(2).
    public var unlink: @Sendable (_ path: String) -> Result<Void, Errno>

    public static let live = FileCalls(
        open: { path, flags, mode in
            retryingOnEINTR { sysOpen(path, flags, mode) }
        },
        write: { fd, bytes in
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return .success(0) }
            return retryingOnEINTR { sysWrite(fd, base, bytes.count) }
        },
        fsync: { fd in
            retryingOnEINTR { sysFsync(fd) }.map { _ in () }
        },
        close: { fd in closeDescriptor(fd) },
        rename: { from, to in
            retryingOnEINTR { sysRename(from, to) }.map { _ in () }
        },
        unlink: { path in
            retryingOnEINTR { sysUnlink(path) }.map { _ in () }
        }
    )
}

// Inside `FileCalls` the bare names open, write, ... would resolve to its own members.
private func sysOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func sysWrite(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int) -> Int { write(fd, base, count) }
private func sysFsync(_ fd: Int32) -> Int32 { fsync(fd) }
private func sysRename(_ from: String, _ to: String) -> Int32 { rename(from, to) }
private func sysUnlink(_ path: String) -> Int32 { unlink(path) }

/// close(2). EINTR is not retried: on Linux the descriptor is already released when close
/// reports EINTR, and a retry could close a descriptor another thread has just opened.
func closeDescriptor(_ fd: Int32) -> Result<Void, Errno> {
    if close(fd) == 0 { return .success(()) }
    let failure = Errno.current
    return failure.code == EINTR ? .success(()) : .failure(failure)
}

/// open(2) read-only, close-on-exec.
func openForReading(_ path: String) -> Result<Int32, Errno> {
    retryingOnEINTR { open(path, O_RDONLY | O_CLOEXEC) }
}

/// What fstat(2) tells the reader about an open file.
struct FileStatus {
    var size: Int
    var isRegularFile: Bool
    var isDirectory: Bool
}

/// fstat(2).
func fileStatus(_ fd: Int32) -> Result<FileStatus, Errno> {
    var status = stat()
    if fstat(fd, &status) != 0 { return .failure(.current) }
    let type = status.st_mode & S_IFMT
    return .success(FileStatus(
        size: Int(status.st_size),
        isRegularFile: type == S_IFREG,
        isDirectory: type == S_IFDIR))
}

/// mmap(2) of a whole file, PROT_READ and MAP_PRIVATE. `length` must be positive.
func mapReadOnly(_ fd: Int32, length: Int) -> Result<UnsafeRawBufferPointer, Errno> {
    let address = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0)
    guard let address, address != MAP_FAILED else { return .failure(.current) }
    return .success(UnsafeRawBufferPointer(start: UnsafeRawPointer(address), count: length))
}

/// madvise(2) MADV_DONTNEED on the whole pages inside `range` of a read-only private file
/// mapping: their memory is given back, and a later read maps the file's bytes again.
func dropPages(_ mapping: UnsafeRawBufferPointer, range: Range<Int>) {
    guard let base = mapping.baseAddress else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let address = Int(bitPattern: base)
    let start = (address + range.lowerBound + page - 1) / page * page
    let end = (address + range.upperBound) / page * page
    guard end > start else { return }
    _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, Int32(MADV_DONTNEED))
}

/// munmap(2). It only fails for arguments that did not come from `mapReadOnly`.
func unmap(_ mapping: UnsafeRawBufferPointer) {
    guard let base = mapping.baseAddress, !mapping.isEmpty else { return }
    _ = munmap(UnsafeMutableRawPointer(mutating: base), mapping.count)
}

/// fsync(2) of a directory, so that a rename inside it survives a crash. Filesystems that cannot
/// sync directories report EINVAL; that is not a failure of the write.
func syncDirectory(_ path: String) -> Result<Void, Errno> {
    let fd: Int32
    switch retryingOnEINTR({ open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) {
    case .success(let opened): fd = opened
    case .failure(let failure): return .failure(failure)
    }
    defer { _ = closeDescriptor(fd) }
    switch retryingOnEINTR({ fsync(fd) }) {
    case .success: return .success(())
    case .failure(let failure) where failure.code == EINVAL: return .success(())
    case .failure(let failure): return .failure(failure)
    }
}

/// The names in directory `path` but `.` and `..` (opendir(3)/readdir(3)); empty when it cannot
/// be read.
func directoryEntries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    // d_name is read in place: glibc sizes each record to its name, so copying the whole
    // 256-byte d_name field out of `entry.pointee` reads past the record (AddressSanitizer).
    let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
    while let entry = readdir(dir) {
        let name = String(cString: (UnsafeRawPointer(entry) + nameOffset).assumingMemoryBound(to: CChar.self))
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// Whether process `pid` exists: kill(2) with signal 0 (EPERM: it exists, not ours).
func processExists(_ pid: Int32) -> Bool {
    kill(pid, 0) == 0 || errno == EPERM
}

/// getpid(2).
var currentProcessID: Int32 { getpid() }
