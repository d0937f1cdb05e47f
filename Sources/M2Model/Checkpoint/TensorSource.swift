import SafeTensors

/// Named fp32 tensors to build a model from: a checkpoint file, or tensors in memory (a
/// conversion that renames and adds tensors before writing a model file).
protocol TensorSource {
    /// Where the tensors come from, for error messages.
    var origin: String { get }
    var tensorNames: [String] { get }
    func shape(of name: String) -> [Int]?
    /// nil for tensors held as fp32 values in memory.
    func dtype(of name: String) -> DType?
    func floats(_ name: String) throws -> [Float]
    /// An I8 tensor's values.
    func int8s(_ name: String) throws -> [Int8]
    /// The tensor has been copied out: its memory may be given back.
    func release(_ name: String)
    /// An F16 or BF16 tensor's raw 16-bit patterns (its dtype says which format).
    func bits16(_ name: String) throws -> [UInt16]
}

extension SafeTensorsFile: TensorSource {
    var origin: String { path }
    var tensorNames: [String] { names }
    func shape(of name: String) -> [Int]? { info(name)?.shape }
    func dtype(of name: String) -> DType? { info(name)?.dtype }
    func release(_ name: String) { releasePages(name) }

    func bits16(_ name: String) throws -> [UInt16] {
        guard let info = info(name), info.dtype == .f16 || info.dtype == .bf16 else {
            throw CheckpointError(file: path, tensor: name, "is not an F16 or BF16 tensor")
        }
        let raw = try bytes(name)
        return (0..<info.elementCount).map { UInt16(raw[2 * $0]) | UInt16(raw[2 * $0 + 1]) << 8 }
    }

    func int8s(_ name: String) throws -> [Int8] {
        guard let info = info(name) else { throw CheckpointError(file: path, tensor: name, "missing") }
        guard info.dtype == .i8 else {
            throw CheckpointError(file: path, tensor: name, "has dtype \(info.dtype), expected I8")
        }
        let raw = try bytes(name)
        return raw.map { Int8(bitPattern: $0) }
    }
}

/// Tensors held in memory, in insertion order.
final class TensorStore: TensorSource {
    struct Entry {
        var shape: [Int]
        var values: [Float]
    }

    let origin: String
    private(set) var tensorNames: [String] = []
    private var entries: [String: Entry] = [:]

    init(origin: String) { self.origin = origin }

    func set(_ name: String, shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "\(name): \(values.count) values for shape \(shape)")
        if entries[name] == nil { tensorNames.append(name) }
        entries[name] = Entry(shape: shape, values: values)
    }

    func shape(of name: String) -> [Int]? { entries[name]?.shape }

    func floats(_ name: String) throws -> [Float] {
        guard let entry = entries[name] else { throw CheckpointError(file: origin, tensor: name, "missing") }
        return entry.values
    }

    func dtype(of name: String) -> DType? { nil }
    func release(_ name: String) {}

    func bits16(_ name: String) throws -> [UInt16] {
        throw CheckpointError(file: origin, tensor: name, "is held as fp32 values, not F16 or BF16")
    }

    func int8s(_ name: String) throws -> [Int8] {
        throw CheckpointError(file: origin, tensor: name, "is held as fp32 values, not int8")
    }

    func entry(_ name: String) -> Entry? { entries[name] }
}
