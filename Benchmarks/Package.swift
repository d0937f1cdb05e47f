// swift-tools-version: 6.1
// package-benchmark suites, kept in their own package so that building and testing m2clip
// does not build the benchmark harness. Run from this folder:
//   swift package --allow-writing-to-package-directory benchmark
import PackageDescription

let package = Package(
    name: "m2clip-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "m2clip", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Kernels",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "Ops", package: "m2clip"),
                .product(name: "CKernels", package: "m2clip"),
            ],
            path: "Benchmarks/Kernels",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "ImageTower",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "M2Model", package: "m2clip"),
                .product(name: "Ops", package: "m2clip"),
            ],
            path: "Benchmarks/ImageTower",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "VideoPath",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "M2Model", package: "m2clip"),
                .product(name: "Video", package: "m2clip"),
                .product(name: "Ops", package: "m2clip"),
            ],
            path: "Benchmarks/VideoPath",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "TrainingStep",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "Training", package: "m2clip"),
                .product(name: "M2Model", package: "m2clip"),
                .product(name: "Ops", package: "m2clip"),
            ],
            path: "Benchmarks/TrainingStep",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "DaemonLatency",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "Daemon", package: "m2clip"),
                .product(name: "M2Model", package: "m2clip"),
                .product(name: "Quantization", package: "m2clip"),
                .product(name: "Video", package: "m2clip"),
                .product(name: "Ops", package: "m2clip"),
            ],
            path: "Benchmarks/DaemonLatency",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ]
)
