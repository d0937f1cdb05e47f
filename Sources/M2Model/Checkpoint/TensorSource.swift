import SafeTensors

/// Named fp32 tensors to build a model from: a checkpoint file, or tensors in memory (a
/// conversion that renames and adds tensors before writing a model file).
protocol TensorSource {
    /// Where the tensors come from, for error messages.
    var origin: String { get }
    var tensorNames: [String] { get }
    func shape(of name: String) -> [Int]?
    func floats(_ name: String) throws -> [Float]
}

extension SafeTensorsFile: TensorSource {
    var origin: String { path }
    var tensorNames: [String] { names }
    func shape(of name: String) -> [Int]? { info(name)?.shape }
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

    func entry(_ name: String) -> Entry? { entries[name] }
}
