import Benchmark
import Daemon
import Foundation
import M2Model
import Ops
import Quantization
import Video

// m2clipd's frame-to-event latency: the capture timestamp of a window's last frame → the
// action event for that window handed to the event bus, through the real CameraPipeline
// (sampling, CLIP preprocessing, the window slot, inference, scoring, the action tracker), on
// an untrained M²-CLIP B/16 quantized to int8 (same cost as a trained one), 8-frame windows
// of 320×240 frames, every thread of the machine.
//
// Metrics: wall clock per window (model included), and `overhead_us`: that latency minus the
// model's own time for the window (the event's latency_ms). Goal: overhead ≤ 20 ms.

let benchmarks: @Sendable () -> Void = {
    Benchmark("frame → action event, B/16 int8, 8-frame window",
              configuration: .init(metrics: [.wallClock, .custom("overhead_us", polarity: .prefersSmaller)],
                                   warmupIterations: 1, maxDuration: .seconds(30), maxIterations: 20)) { benchmark in
        let rig = fixture
        for _ in benchmark.scaledIterations {
            let (latency, model) = rig.oneWindow()
            blackHole(latency)
            benchmark.measurement(.custom("overhead_us"), Int(((latency - model) * 1e6).rounded()))
        }
    }
}

/// Frames pushed by the benchmark, as a camera would deliver them.
final class PushSource: CameraSource, @unchecked Sendable {
    let fps = 8.0
    private var deliver: (@Sendable (CapturedFrame) -> Void)?
    func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
               onStatus: @escaping @Sendable (CameraSourceStatus) -> Void,
               onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws {
        deliver = onFrame
        onStatus(.online)
    }
    func stop() {}
    func push(_ frame: CapturedFrame) { deliver?(frame) }
}

/// The pipeline and model, built once on first use.
final class DaemonRig: @unchecked Sendable {
    let source = PushSource()
    let pipeline: CameraPipeline
    private let events = NSCondition()
    private var lastAction: (windowEnd: Double, published: Double, modelMs: Double)?
    private var sequence = 0
    private let frame: RGBFrame

    init() {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-bench-vitb16").path
        if !FileManager.default.fileExists(atPath: directory + "/model.safetensors") {
            try! RandomCheckpoint.write(configuration: RandomCheckpoint.Preset.vitB16.configuration, to: directory, seed: 0)
        }
        let context = try! ComputeContext()
        let fp32 = directory + "/daemon.m2c", int8 = directory + "/daemon-int8.m2c"
        if !FileManager.default.fileExists(atPath: int8) {
            try! Conversion.convert(.huggingFace(directory: directory),
                                    options: .init(labels: ["opening door", "closing door", "walking"]),
                                    output: fp32, context: context)
            _ = try! Quantizer(target: .int8).quantize(input: fp32, output: int8)
        }
        let engine = InferenceEngine(model: try! ModelFile.load(path: int8, context: context), context: context)
        // stride = frames: each window is new content; thresholds 0 / -: every window updates.
        let camera = DaemonConfiguration.Camera(id: "bench", source: .file(path: "-", loop: false), sampleFPS: 8,
                                                stride: 8, frames: 8, head: .zeroShot,
                                                thresholds: .init(start: 0, end: -1), labels: nil)
        var rgb = [UInt8](repeating: 0, count: 320 * 240 * 3)
        for i in rgb.indices { rgb[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
        frame = RGBFrame(width: 320, height: 240, rgb: rgb, index: 0, timestamp: 0, sourceIndex: 0, clamped: false)
        let events = self.events
        nonisolated(unsafe) var sink: DaemonRig?
        pipeline = try! CameraPipeline(camera: camera, source: source, engine: engine, epoch: "benchmark", emit: { event in
            let published = MonotonicClock.now()
            let action: DaemonEvent.Action?
            switch event {
            case .actionStart(let a), .actionUpdate(let a): action = a
            default: action = nil
            }
            guard let action else { return }
            events.withLock {
                sink?.lastAction = (action.windowEndMonotonic, published, action.latencyMs)
                events.broadcast()
            }
        })
        sink = self
        pipeline.start()
    }

    /// Pushes one window's frames; seconds from its last frame's capture to its event, and the
    /// model's share.
    func oneWindow() -> (latency: Double, model: Double) {
        var last = 0.0
        for _ in 0..<8 {
            last = MonotonicClock.now()
            source.push(CapturedFrame(image: frame, sequence: sequence, wallClock: MonotonicClock.wallNow(), monotonic: last))
            sequence += 1
        }
        events.lock()
        defer { events.unlock() }
        while lastAction?.windowEnd != last { events.wait() }
        let action = lastAction!
        return (action.published - last, action.modelMs / 1000)
    }
}

let fixture = DaemonRig()
