import CKernels

/// A dense fp32 tensor, row-major, 64-byte aligned, owning its storage.
///
/// Storage is not copied on assignment (a class): ops write into tensors they are given,
/// so a model allocates its activations once and reuses them across calls.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    /// A zero-filled tensor.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        count = shape.reduce(1, *)
        guard let raw = m2k_alloc(max(count, 1) * MemoryLayout<Float>.stride) else {
            fatalError("out of memory allocating a tensor of shape \(shape)")
        }
        data = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        data.initialize(repeating: 0, count: max(count, 1))
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit { m2k_free(data) }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// Row `index` of a tensor viewed as (count / lastDim, lastDim).
    public func row(_ index: Int) -> [Float] {
        let width = shape.last ?? 1
        return Array(UnsafeBufferPointer(start: data + index * width, count: width))
    }
}
