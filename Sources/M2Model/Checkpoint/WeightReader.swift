import SafeTensors

/// Strict access to a checkpoint's tensors: a missing or mis-shaped tensor is an error
/// naming it, and `finish` reports any tensor that nothing consumed.
final class WeightReader {
    let file: SafeTensorsFile
    let path: String
    private(set) var consumed: Set<String> = []

    init(path: String) throws {
        do {
            file = try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: error.tensor, error.message)
        }
        self.path = path
    }

    /// The tensor `name` as fp32 values, checked against `shape`. A scalar may be stored
    /// with shape [] or [1].
    func floats(_ name: String, shape: [Int]) throws -> [Float] {
        guard let info = file.info(name) else {
            throw CheckpointError(file: path, tensor: name, "missing")
        }
        let stored = info.shape
        let scalarMatch = shape.reduce(1, *) == 1 && stored.reduce(1, *) == 1 && stored.count <= 1
            && shape.count <= 1
        guard stored == shape || scalarMatch else {
            throw CheckpointError(file: path, tensor: name, "has shape \(stored), expected \(shape)")
        }
        consumed.insert(name)
        do {
            return try file.floats(name)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: name, error.message)
        }
    }

    func contains(_ name: String) -> Bool { file.info(name) != nil }

    /// Fails on the first tensor nobody consumed, unless `ignore` says it may be left.
    func finish(ignoring ignore: (String) -> Bool) throws {
        for name in file.names where !consumed.contains(name) && !ignore(name) {
            throw CheckpointError(file: path, tensor: name, "unexpected (not part of this model)")
        }
    }
}
