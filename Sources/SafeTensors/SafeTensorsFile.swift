/// A safetensors file mapped into memory and validated. Nothing is copied at open: `bytes(_:)`
/// returns a view into the mapping, and `floats(_:)` / `int64s(_:)` convert straight from it.
///
///     let file = try SafeTensorsFile(path: "model.safetensors")
///     let weight = try file.floats("visual.proj")   // (768, 512), row-major
///
/// The object is immutable after `init`, so it may be shared between threads. The mapping is
/// MAP_PRIVATE: if another process truncates the file while it is mapped, reading the lost pages
/// raises SIGBUS, as with any mmap reader.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The path given to `init`.
    public let path: String
    /// `__metadata__` of the header; empty when the header has none.
    public let metadata: [String: String]
    /// Tensor names in file order (by data offset).
    public let names: [String]

    private let tensors: [String: TensorInfo]
    /// The whole file.
    private let mapping: UnsafeRawBufferPointer
    /// Offset of the data section in the file: 8 + header length.
    private let dataStart: Int

    /// Maps the file at `path` read-only and validates its header. Throws `SafeTensorsError`
    /// naming the file, and the tensor where there is one, for anything malformed.
    public init(path: String) throws {
        func failure(_ message: String) -> SafeTensorsError {
            SafeTensorsError(path: path, message: message)
        }

        let fd: Int32
        switch openForReading(path) {
        case .success(let opened): fd = opened
        case .failure(let errno): throw failure("cannot open: \(errno)")
        }
        // The mapping keeps the file alive; the descriptor is not needed past init.
        defer { _ = closeDescriptor(fd) }

        let status: FileStatus
        switch fileStatus(fd) {
        case .success(let result): status = result
        case .failure(let errno): throw failure("cannot stat: \(errno)")
        }
        if status.isDirectory { throw failure("is a directory, expected a safetensors file") }
        guard status.isRegularFile else { throw failure("is not a regular file") }
        if status.size == 0 {
            throw failure("file is empty, expected an 8-byte header length, a JSON header and data")
        }
        guard status.size >= 8 else {
            throw failure("file is \(status.size) bytes, shorter than the 8-byte header length")
        }

        let mapping: UnsafeRawBufferPointer
        switch mapReadOnly(fd, length: status.size) {
        case .success(let mapped): mapping = mapped
        case .failure(let errno): throw failure("cannot mmap \(status.size) bytes: \(errno)")
        }

        let header: Header
        let dataStart: Int
        do {
            let headerLength = UInt64(littleEndian: mapping.loadUnaligned(as: UInt64.self))
            guard headerLength <= UInt64(Header.maximumLength) else {
                throw failure("header length \(headerLength) exceeds the limit of \(Header.maximumLength) bytes")
            }
            let available = status.size - 8
            guard Int(headerLength) <= available else {
                throw failure("header length \(headerLength) is larger than the \(available) bytes that follow it in the file")
            }
            dataStart = 8 + Int(headerLength)
            header = try Header.parse(
                UnsafeRawBufferPointer(rebasing: mapping[8..<dataStart]),
                dataSectionSize: status.size - dataStart, path: path)
        } catch {
            unmap(mapping)
            throw error
        }

        self.path = path
        self.mapping = mapping
        self.dataStart = dataStart
        self.metadata = header.metadata
        self.names = header.tensors.map(\.name)
        // The JSON parser rejects duplicate keys, so names are unique.
        self.tensors = Dictionary(uniqueKeysWithValues: header.tensors.map { ($0.name, $0) })
    }

    deinit {
        unmap(mapping)
    }

    /// Dtype, shape and byte range of `name`, or nil when the file has no such tensor.
    public func info(_ name: String) -> TensorInfo? {
        tensors[name]
    }

    /// Whether the file holds a tensor called `name`.
    /// Gives back the memory of the pages that hold only this tensor's bytes (a loader that
    /// has copied or packed a tensor calls it so that the file does not stay resident). The
    /// bytes stay readable: a later read maps them from the file again.
    public func releasePages(_ name: String) {
        guard let info = tensors[name] else { return }
        dropPages(mapping, range: (dataStart + info.byteRange.lowerBound)..<(dataStart + info.byteRange.upperBound))
    }

    public func contains(_ name: String) -> Bool {
        tensors[name] != nil
    }

    /// The stored bytes of `name`, little-endian, without a copy. The buffer points into the
    /// mapping: it is valid while this object lives, and is not aligned to the element size.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        view(try require(name))
    }

    /// The elements of `name` as `Float`, row-major. Converts F32, F16, BF16 and F64 (F64 rounds
    /// to nearest); other dtypes throw.
    public func floats(_ name: String) throws -> [Float] {
        let info = try require(name)
        let raw = view(info)
        let count = raw.count / info.dtype.byteSize
        switch info.dtype {
        case .f32:
            #if _endian(little)
            return Array(unsafeUninitializedCapacity: count) { buffer, initialized in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: raw)
                initialized = count
            }
            #else
            return convert(raw, count: count) { Float(bitPattern: UInt32(littleEndian: $0)) }
            #endif
        case .f16:
            return convert(raw, count: count) {
                FloatConversion.float(fromFloat16Bits: UInt16(littleEndian: $0))
            }
        case .bf16:
            return convert(raw, count: count) {
                FloatConversion.float(fromBFloat16Bits: UInt16(littleEndian: $0))
            }
        case .f64:
            return convert(raw, count: count) { Float(Double(bitPattern: UInt64(littleEndian: $0))) }
        default:
            throw SafeTensorsError(path: path, tensor: name, message: "has dtype \(info.dtype), "
                + "expected a floating-point dtype (F32, F16, BF16 or F64)")
        }
    }

    /// The elements of `name` as `Int64`, row-major. Converts I64, I32, I16, I8, U32, U16, U8,
    /// and U64 values up to `Int64.max`; other dtypes throw.
    public func int64s(_ name: String) throws -> [Int64] {
        let info = try require(name)
        let raw = view(info)
        let count = raw.count / info.dtype.byteSize
        switch info.dtype {
        case .i64: return convert(raw, count: count) { Int64(littleEndian: $0) }
        case .i32: return convert(raw, count: count) { Int64(Int32(littleEndian: $0)) }
        case .i16: return convert(raw, count: count) { Int64(Int16(littleEndian: $0)) }
        case .i8: return convert(raw, count: count) { (value: Int8) in Int64(value) }
        case .u32: return convert(raw, count: count) { Int64(UInt32(littleEndian: $0)) }
        case .u16: return convert(raw, count: count) { Int64(UInt16(littleEndian: $0)) }
        case .u8: return convert(raw, count: count) { (value: UInt8) in Int64(value) }
        case .u64:
            let values: [UInt64] = convert(raw, count: count) { UInt64(littleEndian: $0) }
            if let index = values.firstIndex(where: { $0 > UInt64(Int64.max) }) {
                throw SafeTensorsError(path: path, tensor: name,
                    message: "element \(index) is \(values[index]), too large for Int64")
            }
            return values.map { Int64($0) }
        default:
            throw SafeTensorsError(path: path, tensor: name, message: "has dtype \(info.dtype), "
                + "expected an integer dtype (I64, I32, I16, I8, U64, U32, U16 or U8)")
        }
    }

    // MARK: Private

    private func require(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else {
            throw SafeTensorsError(path: path, tensor: name, message: "no such tensor in the file")
        }
        return info
    }

    private func view(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing:
            mapping[(dataStart + info.byteRange.lowerBound)..<(dataStart + info.byteRange.upperBound)])
    }

    /// Reads `count` elements of `Stored` from unaligned `raw` and maps each through `transform`.
    @inline(__always)
    private func convert<Stored: FixedWidthInteger, Element>(
        _ raw: UnsafeRawBufferPointer, count: Int, _ transform: (Stored) -> Element
    ) -> [Element] {
        let stride = MemoryLayout<Stored>.size
        return Array(unsafeUninitializedCapacity: count) { buffer, initialized in
            for index in 0..<count {
                let stored = raw.loadUnaligned(fromByteOffset: index * stride, as: Stored.self)
                buffer.initializeElement(at: index, to: transform(stored))
            }
            initialized = count
        }
    }
}
