import Benchmark
import CKernels
import Ops

// fp32 GEMM throughput on the ViT-B/16 shapes (M tokens × K in → N out), one frame
// (M = 197) and one 8-frame clip batched (M = 1576), with every thread of the machine.
// Custom metrics: GFLOP/s (fp32) or GOPS (int8), 2·M·N·K per call, and the same as a share
// of this machine's peak measured on all threads in the same run (m2k_peak_*).

let gflops = BenchmarkMetric.custom("GFLOP/s", polarity: .prefersLarger, useScalingFactor: false)
let gops = BenchmarkMetric.custom("GOPS", polarity: .prefersLarger, useScalingFactor: false)
let percentOfPeak = BenchmarkMetric.custom("% of peak", polarity: .prefersLarger, useScalingFactor: false)

struct GEMMCase {
    let m: Int, k: Int, n: Int
    var shape: String { "\(m)x\(k)x\(n)" }
}

let benchmarks: @Sendable () -> Void = {
    let cases = [197, 1576].flatMap { m in
        [GEMMCase(m: m, k: 768, n: 2304), GEMMCase(m: m, k: 768, n: 3072), GEMMCase(m: m, k: 3072, n: 768)]
    }
    let context = try! ComputeContext()
    let peak = MachinePeak.measure(context: context)
    for c in cases {
        var rng = SplitMix64(seed: 1)
        func uniform() -> Float { Float(rng.next() >> 40) / Float(1 << 24) - 0.5 } // [-0.5, 0.5)
        let weight = (0..<(c.n * c.k)).map { _ in uniform() }
        let linear = Linear(weight: weight, bias: [Float](repeating: 0.1, count: c.n),
                            inFeatures: c.k, outFeatures: c.n, context: context)
        let x = Tensor(shape: [c.m, c.k], values: (0..<(c.m * c.k)).map { _ in uniform() })
        let y = Tensor(shape: [c.m, c.n])
        Benchmark("fp32 gemm " + c.shape, configuration: .init(metrics: [.wallClock, gflops, percentOfPeak], warmupIterations: 2,
                                               maxDuration: .seconds(3), maxIterations: 200)) { benchmark in
            benchmark.startMeasurement()
            let start = ContinuousClock.now
            for _ in benchmark.scaledIterations {
                linear(x.data, rows: c.m, into: y.data, context: context)
            }
            let elapsed = ContinuousClock.now - start
            benchmark.stopMeasurement()
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let flop = 2.0 * Double(c.m * c.n * c.k) * Double(benchmark.scaledIterations.count)
            benchmark.measurement(gflops, Int(flop / seconds / 1e9))
            benchmark.measurement(percentOfPeak, Int(100 * flop / seconds / 1e9 / max(peak.fp32GflopsAllThreads, 1)))
            blackHole(y.data[0])
        }

        guard peak.int8GopsAllThreads > 0 else { continue }
        let (q, scales) = Linear.quantize(weight: weight, inFeatures: c.k, outFeatures: c.n)
        let int8 = Linear(quantized: q, scales: scales, bias: [Float](repeating: 0.1, count: c.n),
                          inFeatures: c.k, outFeatures: c.n, context: context)
        Benchmark("int8 gemm " + c.shape, configuration: .init(metrics: [.wallClock, gops, percentOfPeak], warmupIterations: 2,
                                                        maxDuration: .seconds(3), maxIterations: 400)) { benchmark in
            benchmark.startMeasurement()
            let start = ContinuousClock.now
            for _ in benchmark.scaledIterations {
                int8(x.data, rows: c.m, into: y.data, context: context)
            }
            let elapsed = ContinuousClock.now - start
            benchmark.stopMeasurement()
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let ops = 2.0 * Double(c.m * c.n * c.k) * Double(benchmark.scaledIterations.count)
            benchmark.measurement(gops, Int(ops / seconds / 1e9))
            benchmark.measurement(percentOfPeak, Int(100 * ops / seconds / 1e9 / peak.int8GopsAllThreads))
            blackHole(y.data[0])
        }
    }
}
