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
        let header = headerBytes()
        guard header.count <= Header.maximumLength else {
            throw SafeTensorsError(path: path, message: "header of \(header.count) bytes exceeds the limit of \(Header.maximumLength) bytes")
        }
        let lengthPrefix = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
        do {
            try AtomicFile.write([lengthPrefix, header] + entries.map(\.bytes), to: path, calls: calls)
        } catch {
            throw SafeTensorsError(path: path, message: error.message)
        }
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
func splitPath(_ path: String) -> (directory: String, base: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let directory = String(path[..<slash])
    return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
}

func joinPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}
