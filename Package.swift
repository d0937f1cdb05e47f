// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "m2clip",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "m2clip", targets: ["m2clip"]),
        .library(name: "M2Model", targets: ["M2Model"]),
        .library(name: "Ops", targets: ["Ops"]),
        .library(name: "Video", targets: ["Video"]),
        .library(name: "Pipeline", targets: ["Pipeline"]),
        .library(name: "Quantization", targets: ["Quantization"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Daemon", targets: ["Daemon"]),
        .library(name: "SafeTensors", targets: ["SafeTensors"]),
        .library(name: "CKernels", targets: ["CKernels"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // C compute core: scalar reference, x86 (AVX2, AVX-512) and Arm (NEON) variants,
        // chosen at run time. ISA code uses per-function target attributes, no global -m flags.
        .target(
            name: "CKernels",
            path: "Sources/CKernels",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // FFmpeg (libavformat, libavcodec, libswscale, libavutil) from Debian's -dev packages.
        .systemLibrary(
            name: "CFFmpeg",
            path: "Sources/CFFmpeg",
            pkgConfig: "libavformat libavcodec libswscale libavutil",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"])]
        ),
        // V4L2 (linux/videodev2.h) through libv4l2 from Debian's libv4l-dev.
        .systemLibrary(
            name: "CV4L2",
            path: "Sources/CV4L2",
            pkgConfig: "libv4l2",
            providers: [.apt(["libv4l-dev"])]
        ),
        // Eclipse Mosquitto's MQTT client (libmosquitto) from Debian's libmosquitto-dev.
        .systemLibrary(
            name: "CMosquitto",
            path: "Sources/CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // systemd's journal client (libsystemd) from Debian's libsystemd-dev: m2clipd's log fields.
        .systemLibrary(
            name: "CSystemd",
            path: "Sources/CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // Tensors, thread pool and fp32 ops as Swift wrappers over CKernels.
        .target(name: "Ops", dependencies: ["CKernels"]),
        // The safetensors format: validated mmap reader and writer.
        .target(name: "SafeTensors"),
        // Video in: files through FFmpeg, cameras through V4L2, frame sampling, CLIP preprocessing.
        .target(name: "Video", dependencies: ["CFFmpeg", "CV4L2", "Ops", "CKernels"]),
        // CLIP configuration, checkpoint names, tokenizer, towers.
        // The bundled CLIP vocabulary (data, kept out of Sources/).
        .target(
            name: "CLIPVocabulary",
            path: "Resources/CLIPVocabulary",
            resources: [.copy("clip-tokenizer")]
        ),
        .target(name: "M2Model", dependencies: ["Ops", "SafeTensors", "CLIPVocabulary"]),
        // The trainer: backward through the frozen towers into the adapters, the four losses,
        // gradient buffers, the optimizer, clip lists and the loader that feeds it, checkpoints,
        // evaluation. Only the CLI imports it.
        .target(name: "Training", dependencies: ["M2Model", "Ops", "SafeTensors", "CKernels", "Video"]),
        // int8 model files: which weights, how, and what it costs in accuracy.
        .target(name: "Quantization", dependencies: ["M2Model", "Video", "SafeTensors"]),
        // Video → model → answers: classification of files (later: the daemon's pipelines).
        .target(name: "Pipeline", dependencies: ["M2Model", "Video"]),
        // m2clipd as a library: configuration, camera pipelines, event bus, socket server, MQTT,
        // event history (SQLite through GRDB, linking Debian's libsqlite3-dev).
        .target(
            name: "Daemon",
            dependencies: ["Pipeline", "M2Model", "Video", "SafeTensors", "CMosquitto", "CSystemd",
                           .product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log"),
                           .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "FlyingFox", package: "FlyingFox"),
                           .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .executableTarget(name: "m2clipd", dependencies: [
            "Daemon", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(
            name: "m2clip",
            dependencies: [
                "M2Model",
                "Video",
                "Pipeline",
                "Quantization",
                "Training",
                "Daemon",
                "SafeTensors",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "KernelTests", dependencies: ["CKernels", "Ops"]),
        .testTarget(name: "OpsTests", dependencies: ["Ops"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "Ops"]),
        // A scripted fake V4L2 device behind the V4L2Driver seam, for Video and Daemon tests.
        .target(name: "V4L2Testing", dependencies: ["Video", "CV4L2"], path: "Tests/Support/V4L2Testing"),
        // Loopback sockets and server subprocesses for the network-stream tests.
        .target(name: "NetworkTesting", path: "Tests/Support/NetworkTesting"),
        .testTarget(name: "VideoTests", dependencies: ["Video", "CV4L2", "V4L2Testing", "NetworkTesting"]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline"]),
        .testTarget(name: "QuantizationTests", dependencies: ["Quantization"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "SafeTensors", "CV4L2", "V4L2Testing", "NetworkTesting"]),
        // Runs the built m2clip binary as a separate process.
        .testTarget(name: "CLITests", dependencies: ["m2clip", "m2clipd", "NetworkTesting"]),
        // Fixtures live in Tests/Fixtures and are found from #filePath.
        .target(name: "ReferenceConfigs", dependencies: ["M2Model"], path: "Tests/Support/ReferenceConfigs"),
        .testTarget(name: "M2ModelTests", dependencies: ["M2Model", "ReferenceConfigs"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "M2Model", "Ops", "SafeTensors", "Video", "ReferenceConfigs"]),
        // Every parser of outside input as a fuzz target; the suite replays the corpora in Fuzz/.
        .target(name: "FuzzTargets", dependencies: ["SafeTensors", "M2Model", "Training", "Daemon", "Video", "Ops"]),
        .testTarget(name: "FuzzCorpusTests", dependencies: ["FuzzTargets"]),
    ]
)

// The libFuzzer binary, only for scripts/fuzz.sh (M2CLIP_FUZZ=1): it has no main of its own.
if Context.environment["M2CLIP_FUZZ"] != nil {
    package.targets.append(.executableTarget(name: "m2clip-fuzz", dependencies: ["FuzzTargets"], path: "Fuzz/m2clip-fuzz"))
    package.products.append(.executable(name: "m2clip-fuzz", targets: ["m2clip-fuzz"]))
}
