#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a safetensors file in memory and writes it atomically.
///
///     var writer = SafeTensorsWriter(metadata: ["format": "pt"])
///     try writer.add(name: "visual.proj", shape: [768, 512], floats: projection)
///     try writer.write(to: "model.safetensors")
///
/// The header is compact JSON as the reference writer emits it: `__metadata__` first (omitted
/// when empty), then tensor names in byte order, each `{"dtype", "shape", "data_offsets"}`, padded
/// with spaces to a multiple of 8 bytes. Tensor data follows in insertion order with no gaps,
/// which the reference reader requires.
public struct SafeTensorsWriter: Sendable {
    /// Written as `__metadata__`; the reference tools expect e.g. `["format": "pt"]`.
    public var metadata: [String: String]

    private struct Entry: Sendable {
        var name: String
        var dtype: DType
        var shape: [Int]
        var bytes: [UInt8]
    }

    private var entries: [Entry] = []
    private var names: Set<String> = []

    public init(metadata: [String: String] = [:]) {
        self.metadata = metadata
    }

    /// Names added so far, in insertion (file) order.
    public var tensorNames: [String] { entries.map(\.name) }

    /// Adds a tensor from its little-endian bytes. `bytes.count` must equal
    /// product(shape) × `dtype.byteSize`; the name must be new and not `__metadata__`.
    public mutating func add(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) throws {
        try validate(name: name, dtype: dtype, shape: shape, byteCount: bytes.count)
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
        names.insert(name)
    }

    /// Adds a tensor from little-endian bytes in memory the caller owns; they are copied.
    public mutating func add(name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        try add(name: name, dtype: dtype, shape: shape, bytes: Array(bytes))
    }

    /// Adds an F32 tensor; `floats` is row-major with product(shape) elements.
    public mutating func add(name: String, shape: [Int], floats: [Float]) throws {
        try checkCount(name: name, shape: shape, count: floats.count)
        try add(name: name, dtype: .f32, shape: shape, bytes: littleEndianBytes(floats) { $0.bitPattern })
    }

    /// Adds an F16 tensor, rounding each value to nearest, ties to even (beyond ±65504 → ±inf).
    public mutating func add(name: String, shape: [Int], float16s: [Float]) throws {
        try checkCount(name: name, shape: shape, count: float16s.count)
        try add(name: name, dtype: .f16, shape: shape,
                bytes: littleEndianBytes(float16s) { FloatConversion.float16Bits(from: $0) })
    }

    /// Adds a BF16 tensor, rounding each value to nearest, ties to even.
    public mutating func add(name: String, shape: [Int], bfloat16s: [Float]) throws {
        try checkCount(name: name, shape: shape, count: bfloat16s.count)
        try add(name: name, dtype: .bf16, shape: shape,
                bytes: littleEndianBytes(bfloat16s) { FloatConversion.bfloat16Bits(from: $0) })
    }

    /// Adds an I64 tensor; `int64s` is row-major with product(shape) elements.
    public mutating func add(name: String, shape: [Int], int64s: [Int64]) throws {
        try checkCount(name: name, shape: shape, count: int64s.count)
        try add(name: name, dtype: .i64, shape: shape, bytes: littleEndianBytes(int64s) { $0 })
    }

    /// Writes the file. The bytes go to a temporary file in the same directory, are fsynced,
    /// and are renamed over `path`, so `path` never holds a partial file; on failure the
    /// temporary file is removed and the error names `path` and the system's reason.
    public func write(to path: String) throws {
        try write(to: path, calls: .live)
    }

    // MARK: Internal

    /// The header: JSON padded with spaces to a multiple of 8 bytes.
    func headerBytes() -> [UInt8] {
        var offsets: [String: Range<Int>] = [:]
        var position = 0
        for entry in entries {
            offsets[entry.name] = position..<(position + entry.bytes.count)
            position += entry.bytes.count
        }

        var members: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
                .map { jsonStringLiteral($0.key) + ":" + jsonStringLiteral($0.value) }
            members.append(jsonStringLiteral(Header.metadataKey) + ":{" + pairs.joined(separator: ",") + "}")
        }
        for entry in entries.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }) {
            let range = offsets[entry.name] ?? 0..<0
            members.append(jsonStringLiteral(entry.name)
                + ":{\"dtype\":\"\(entry.dtype.rawValue)\""
                + ",\"shape\":[" + entry.shape.map(String.init).joined(separator: ",") + "]"
                + ",\"data_offsets\":[\(range.lowerBound),\(range.upperBound)]}")
        }
        var bytes = Array(("{" + members.joined(separator: ",") + "}").utf8)
        let padded = (bytes.count + 7) / 8 * 8
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padded - bytes.count))
        return bytes
    }

    /// `write(to:)` with the system calls supplied, so tests can make them fail.
    func write(to path: String, calls: FileCalls) throws {
        func failure(_ message: String) -> SafeTensorsError {
            SafeTensorsError(path: path, message: message)
        }

        let (directory, base) = splitPath(path)
        guard !base.isEmpty, base != ".", base != ".." else {
            throw failure("path names a directory, expected a file name")
        }
        let header = headerBytes()
        guard header.count <= Header.maximumLength else {
            throw failure("header of \(header.count) bytes exceeds the limit of \(Header.maximumLength) bytes")
        }

        for leftover in Self.removeLeftovers(of: path, calls: calls) {
            WriteNotices.post("\(path): removed \(leftover), the partial file of an earlier write that was "
                + "interrupted (process killed or machine down); \(base) itself was not touched by it")
        }

        // A hidden name next to the target keeps the final rename(2) within one filesystem; the
        // writer's pid in it tells a later write whether it is a leftover (`removeLeftovers`).
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
        do {
            let lengthPrefix = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
            try writeAll(lengthPrefix, to: fd, calls: calls, temporary: temporary, failure: failure)
            try writeAll(header, to: fd, calls: calls, temporary: temporary, failure: failure)
            for entry in entries {
                try writeAll(entry.bytes, to: fd, calls: calls, temporary: temporary, failure: failure)
            }
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

    /// Removes the temporary files that writes of `path` left behind when their process died
    /// mid-write (`.BASE.tmp-PID-…` whose PID no longer runs) and returns their names. The file at
    /// `path` is never torn by such a write: it is only replaced, by rename(2), once whole.
    @discardableResult
    public static func removeLeftovers(of path: String) -> [String] {
        removeLeftovers(of: path, calls: .live)
    }

    static func removeLeftovers(of path: String, calls: FileCalls) -> [String] {
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

    // MARK: Private

    private func validate(name: String, dtype: DType, shape: [Int], byteCount actual: Int) throws {
        func failure(_ message: String) -> SafeTensorsError {
            SafeTensorsError(path: nil, tensor: name, message: message)
        }
        guard !name.isEmpty else { throw failure("tensor name is empty") }
        guard name != Header.metadataKey else {
            throw failure("\(Header.metadataKey) is reserved for the metadata and cannot name a tensor")
        }
        guard !names.contains(name) else { throw failure("a tensor with this name was already added") }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw failure("shape \(describe(shape)) has a negative dimension")
        }
        guard let needed = byteCount(of: dtype, shape: shape) else {
            throw failure("shape \(describe(shape)) with dtype \(dtype) overflows a 64-bit byte count")
        }
        guard needed == actual else {
            throw failure("shape \(describe(shape)) with dtype \(dtype) needs \(needed) bytes, got \(actual)")
        }
    }

    private func checkCount(name: String, shape: [Int], count: Int) throws {
        // Negative dimensions and overflow are reported by `validate` with the byte count.
        guard let needed = elementCount(of: shape), needed != count else { return }
        throw SafeTensorsError(path: nil, tensor: name,
            message: "shape \(describe(shape)) needs \(needed) values, got \(count)")
    }

    private func writeAll(
        _ bytes: [UInt8], to fd: Int32, calls: FileCalls, temporary: String,
        failure: (String) -> SafeTensorsError
    ) throws {
        // write(2) moves at most about 2 GiB per call on Linux; ask for 1 GiB at a time.
        let chunk = 1 << 30
        try bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let end = min(buffer.count, written + chunk)
                switch calls.write(fd, UnsafeRawBufferPointer(rebasing: buffer[written..<end])) {
                case .success(let count) where count > 0:
                    written += count
                case .success:
                    throw failure("cannot write temporary file \(temporary): write returned 0")
                case .failure(let errno):
                    throw failure("cannot write temporary file \(temporary): \(errno)")
                }
            }
        }
    }
}

/// Little-endian bytes of `values`, each mapped through `bits` to its stored integer.
private func littleEndianBytes<Value, Bits: FixedWidthInteger>(
    _ values: [Value], _ bits: (Value) -> Bits
) -> [UInt8] {
    let size = MemoryLayout<Bits>.size
    return [UInt8](unsafeUninitializedCapacity: values.count * size) { buffer, initialized in
        let raw = UnsafeMutableRawBufferPointer(buffer)
        for (index, value) in values.enumerated() {
            raw.storeBytes(of: bits(value).littleEndian, toByteOffset: index * size, as: Bits.self)
        }
        initialized = values.count * size
    }
}

/// ("dir", "name") of "dir/name"; (".", "name") of "name"; ("/", "name") of "/name".
private func splitPath(_ path: String) -> (directory: String, base: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let directory = String(path[..<slash])
    return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
}

private func joinPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
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
