import CKernels
import Testing
@testable import Ops

/// The Swift wrappers over CKernels: layouts, epilogues and context errors, checked against
/// the scalar reference (fp32, max abs 1e-4 on values of magnitude ~1 with K ≤ 300).
@Suite struct OpsTests {
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
    }

    @Test(arguments: [Linear.WeightLayout.outIn, .inOut])
    func linearMatchesReference(layout: Linear.WeightLayout) throws {
        let context = try ComputeContext(threads: 2)
        let rows = 37, inFeatures = 300, outFeatures = 45
        let weight = values(inFeatures * outFeatures, seed: 1), bias = values(outFeatures, seed: 2)
        let x = Tensor(shape: [rows, inFeatures], values: values(rows * inFeatures, seed: 3))
        let linear = Linear(weight: weight, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures,
                            layout: layout, context: context)
        for activation in [Activation.none, .quickGELU, .gelu] {
            let y = Tensor(shape: [rows, outFeatures]), expected = Tensor(shape: [rows, outFeatures])
            linear(x.data, rows: rows, into: y.data, activation: activation, context: context)
            m2k_ref_gemm(rows, outFeatures, inFeatures, x.data, inFeatures, weight,
                         layout == .outIn ? inFeatures : outFeatures,
                         layout == .outIn ? M2K_B_NK : M2K_B_KN, expected.data, outFeatures, bias,
                         activation.cValue, 0)
            let worst = zip(y.array, expected.array).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-4, "\(layout) \(activation): max abs diff \(worst)")
        }
    }

    /// fp16 and bf16 weights are widened to the same fp32 values the fp32 layer holds after
    /// rounding them, and summed by the same kernels in the same order: equal bit for bit, in
    /// half the bytes.
    @Test(arguments: [Linear.WeightLayout.outIn, .inOut], [Linear.Precision.fp16, .bf16])
    func sixteenBitLinearMatchesFP32OnRoundedWeights(layout: Linear.WeightLayout,
                                                     precision: Linear.Precision) throws {
        let context = try ComputeContext(threads: 2)
        let rows = 29, inFeatures = 401, outFeatures = 53
        let weight = values(inFeatures * outFeatures, seed: 4)
        let bias = values(outFeatures, seed: 5)
        let x = Tensor(shape: [rows, inFeatures], values: values(rows * inFeatures, seed: 6))
        let half: Linear, full: Linear
        if precision == .bf16 {
            let bits = weight.map { m2k_bf16_from_float($0) }
            half = Linear(bfloat16Weight: bits, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures,
                          layout: layout, context: context)
            full = Linear(weight: bits.map { m2k_bf16_to_float($0) }, bias: bias, inFeatures: inFeatures,
                          outFeatures: outFeatures, layout: layout, context: context)
        } else {
            let bits = weight.map { m2k_f16_from_float($0) }
            half = Linear(halfWeight: bits, bias: bias, inFeatures: inFeatures, outFeatures: outFeatures,
                          layout: layout, context: context)
            full = Linear(weight: bits.map { m2k_f16_to_float($0) }, bias: bias, inFeatures: inFeatures,
                          outFeatures: outFeatures, layout: layout, context: context)
        }
        #expect(half.precision == precision)
        #expect(half.packedBytes * 2 == full.packedBytes)
        for activation in [Activation.none, .quickGELU, .gelu] {
            let y = Tensor(shape: [rows, outFeatures]), expected = Tensor(shape: [rows, outFeatures])
            half(x.data, rows: rows, into: y.data, activation: activation, context: context)
            full(x.data, rows: rows, into: expected.data, activation: activation, context: context)
            #expect(y.array == expected.array, "\(precision) \(layout) \(activation)")
        }
        let y = Tensor(shape: [rows, outFeatures], values: values(rows * outFeatures, seed: 7))
        let expected = Tensor(shape: [rows, outFeatures], values: y.array)
        half(x.data, rows: rows, into: y.data, accumulate: true, context: context)
        full(x.data, rows: rows, into: expected.data, accumulate: true, context: context)
        #expect(y.array == expected.array, "\(precision) \(layout) accumulate")
    }

    @Test func linearAccumulatesIntoResidual() throws {
        let context = try ComputeContext(threads: 1)
        let linear = Linear(weight: [1, 2, 3, 4], bias: [10, 20], inFeatures: 2, outFeatures: 2, context: context)
        let x = Tensor(shape: [1, 2], values: [1, 1])
        let y = Tensor(shape: [1, 2], values: [100, 200])
        linear(x.data, rows: 1, into: y.data, accumulate: true, context: context)
        #expect(y.array == [113, 227])
    }

    @Test func layerNormMatchesReference() throws {
        let context = try ComputeContext(threads: 1)
        let width = 77
        let norm = LayerNorm(weight: values(width, seed: 4), bias: values(width, seed: 5), epsilon: 1e-5)
        let x = Tensor(shape: [3, width], values: values(3 * width, seed: 6))
        let y = Tensor(shape: [3, width]), expected = Tensor(shape: [3, width])
        norm(x.data, rows: 3, into: y.data, context: context)
        m2k_ref_layernorm(x.data, expected.data, norm.weight.data, norm.bias.data, 3, width, width, width, 1e-5)
        let worst = zip(y.array, expected.array).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5, "max abs diff \(worst)")
    }

    @Test func contextRejectsBadRequests() {
        #expect(throws: ComputeError.self) { _ = try ComputeContext(threads: 0) }
        let unsupported = KernelVariant.allCases.first { !$0.isSupported }
        if let unsupported {
            #expect(throws: ComputeError.self) { _ = try ComputeContext(variant: unsupported) }
        }
        #expect(KernelVariant.scalar.isSupported)
    }

    @Test func tensorShapes() {
        let t = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        #expect(t.count == 6)
        #expect(t.row(1) == [4, 5, 6])
        #expect(Tensor(shape: [0, 4]).count == 0)
    }
}
