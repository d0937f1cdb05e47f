/// The safetensors format: a validated, zero-copy (mmap) reader, `SafeTensorsFile`, and an atomic
/// writer, `SafeTensorsWriter`. Layout of a file:
///
///     [u64 little-endian N] [N bytes of UTF-8 JSON header] [data section]
///
/// The header maps tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}`, offsets
/// relative to the start of the data section, and may hold `"__metadata__": {string: string}`.

/// Element type of a stored tensor, spelled as in the header ("F32", "BF16", ...).
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    /// 8-bit float, 4 exponent bits. Known to the reader, not converted by `floats(_:)`.
    case f8e4m3 = "F8_E4M3"
    /// 8-bit float, 5 exponent bits. Known to the reader, not converted by `floats(_:)`.
    case f8e5m2 = "F8_E5M2"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u64 = "U64"
    case u32 = "U32"
    case u16 = "U16"
    case u8 = "U8"
    /// One byte per element, 0 or 1.
    case bool = "BOOL"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: 8
        case .f32, .i32, .u32: 4
        case .f16, .bf16, .i16, .u16: 2
        case .f8e4m3, .f8e5m2, .i8, .u8, .bool: 1
        }
    }

    /// F64, F32, F16 and BF16: the types `SafeTensorsFile.floats(_:)` converts.
    public var isConvertibleToFloat: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16: true
        default: false
        }
    }

    /// The integer types `SafeTensorsFile.int64s(_:)` converts.
    public var isConvertibleToInt64: Bool {
        switch self {
        case .i64, .i32, .i16, .i8, .u64, .u32, .u16, .u8: true
        default: false
        }
    }

    public var description: String { rawValue }
}

/// Where one tensor lives in a file.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    /// Dimensions in the checkpoint's (PyTorch) order; `[]` is a scalar.
    public var shape: [Int]
    /// `data_offsets` of the header: bytes relative to the start of the data section.
    public var byteRange: Range<Int>

    public init(name: String, dtype: DType, shape: [Int], byteRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteRange = byteRange
    }

    /// Product of `shape` (1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// Bytes needed by `shape` elements of `dtype`, or nil when a dimension is negative or the
/// product overflows `Int`.
func byteCount(of dtype: DType, shape: [Int]) -> Int? {
    var count = dtype.byteSize
    for dimension in shape {
        guard dimension >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
        if overflow { return nil }
        count = product
    }
    return count
}

/// Elements of `shape`, or nil when a dimension is negative or the product overflows.
func elementCount(of shape: [Int]) -> Int? {
    var count = 1
    for dimension in shape {
        guard dimension >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
        if overflow { return nil }
        count = product
    }
    return count
}

/// `[2, 3]`, as the header writes it.
func describe(_ values: [Int]) -> String {
    "[" + values.map(String.init).joined(separator: ", ") + "]"
}
