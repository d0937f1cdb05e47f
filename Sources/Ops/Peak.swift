import CKernels

/// This machine's measured arithmetic peaks, to report kernels as a share of them.
public struct MachinePeak: Codable, Sendable {
    public var fp32GflopsPerCore: Double
    public var fp32GflopsAllThreads: Double
    /// 0 when the CPU has no AVX-512 VNNI.
    public var int8GopsPerCore: Double
    public var int8GopsAllThreads: Double

    enum CodingKeys: String, CodingKey {
        case fp32GflopsPerCore = "fp32_gflops_per_core", fp32GflopsAllThreads = "fp32_gflops_all_threads"
        case int8GopsPerCore = "int8_gops_per_core", int8GopsAllThreads = "int8_gops_all_threads"
    }

    /// About half a second per figure.
    public static func measure(context: ComputeContext, iterations: Int = 20_000_000) -> MachinePeak {
        MachinePeak(fp32GflopsPerCore: m2k_peak_fp32_gflops(iterations),
                    fp32GflopsAllThreads: m2k_peak_all_threads(context.pool, 0, iterations),
                    int8GopsPerCore: m2k_peak_int8_gops(iterations),
                    int8GopsAllThreads: m2k_peak_all_threads(context.pool, 1, iterations))
    }
}
