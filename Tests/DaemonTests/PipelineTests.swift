import Foundation
import Testing
import M2Model
import Ops
import Video
@testable import Daemon

/// A frame for RollingWindow tests: 1×1 pixels, captured at `sequence / 10` seconds.
private func frame(_ sequence: Int) -> CapturedFrame {
    CapturedFrame(image: RGBFrame(width: 1, height: 1, rgb: [0, 0, 0], index: sequence, timestamp: 0,
                                  sourceIndex: sequence, clamped: false),
                  sequence: sequence, wallClock: 1_000 + Double(sequence) / 10, monotonic: Double(sequence) / 10)
}

/// A window whose "pixels" are the frame sequence numbers, one float per frame.
private func numbered(sourceFPS: Double, sampleFPS: Double, frames: Int, stride: Int) -> RollingWindow {
    RollingWindow(sourceFPS: sourceFPS, sampleFPS: sampleFPS, frames: frames, stride: stride, frameSize: 1) {
        [Float($0.index)]
    }
}

@Suite struct RollingWindowTests {
    @Test(arguments: [
        (30.0, 15.0, [0, 2, 4, 6, 8, 10]),
        (30.0, 8.0, [0, 4, 8, 12, 15, 19, 23, 27]), // 30 / 8 = 3.75 frames apart
        (15.0, 15.0, Array(0..<10)),
        (10.0, 25.0, Array(0..<10)),               // asking for more than the camera gives: all
    ])
    func keepsFramesAtTheSampleRate(sourceFPS: Double, sampleFPS: Double, kept: [Int]) {
        var window = numbered(sourceFPS: sourceFPS, sampleFPS: sampleFPS, frames: 1, stride: 1)
        let limit = kept.last! + 1
        #expect((0..<limit).filter { window.keeps($0) } == kept)
    }

    /// Pixels are asked for only for kept frames (a V4L2 frame converts its buffer on that
    /// request); a kept frame that does not decode is lost and counted, and the schedule goes on.
    @Test func decodesOnlyKeptFramesAndCountsUndecodable() {
        let asked = EventOrder()
        var window = numbered(sourceFPS: 30, sampleFPS: 10, frames: 2, stride: 1)
        var windows: [[Float]] = []
        for s in 0..<12 {
            let lazy = CapturedFrame(sequence: s, wallClock: Double(s), monotonic: Double(s)) {
                asked.add("\(s)")
                guard s != 6 else { return nil } // a broken JPEG
                return RGBFrame(width: 1, height: 1, rgb: [0, 0, 0], index: s, timestamp: 0, sourceIndex: s,
                                clamped: false)
            }
            if let w = window.add(lazy) { windows.append(w.pixels) }
        }
        #expect(asked.items == ["0", "3", "6", "9"])
        #expect(window.undecodable == 1 && window.sampled == 3)
        #expect(windows == [[0, 3], [3, 9]])
    }

    @Test func gapsDoNotBurstOrShiftTheSchedule() {
        var window = numbered(sourceFPS: 30, sampleFPS: 10, frames: 1, stride: 1)
        // 0, 3, then the camera drops 4...9: 10 is kept (once, not for 6 and 9 too), and the
        // schedule resumes on its grid of multiples of 3.
        #expect([0, 1, 2, 3, 10, 11, 12, 13, 14, 15].filter { window.keeps($0) } == [0, 3, 10, 12, 15])
    }

    @Test func windowsEveryStrideOnceFull() {
        var rolling = numbered(sourceFPS: 30, sampleFPS: 15, frames: 4, stride: 2)
        var windows: [RollingWindow.Window] = []
        for s in 0..<20 { if let w = rolling.add(frame(s)) { windows.append(w) } }
        // Kept: 0 2 4 … 18 (10 frames); windows after the 4th, 6th, 8th and 10th.
        #expect(rolling.sampled == 10)
        #expect(windows.map(\.sequences) == [[0, 2, 4, 6], [4, 6, 8, 10], [8, 10, 12, 14], [12, 14, 16, 18]])
        #expect(windows.map(\.pixels) == windows.map { $0.sequences.map(Float.init) })
        let last = windows.last!
        #expect(last.frames == 4)
        #expect(last.startMonotonic == 1.2 && last.endMonotonic == 1.8)
        #expect(last.startWallClock == 1_001.2 && last.endWallClock == 1_001.8)
    }

    @Test func strideLongerThanTheWindowLeavesGaps() {
        var rolling = numbered(sourceFPS: 10, sampleFPS: 10, frames: 2, stride: 3)
        let windows = (0..<9).compactMap { rolling.add(frame($0)) }
        #expect(windows.map(\.sequences) == [[0, 1], [3, 4], [6, 7]])
    }

    @Test func clipPreprocessingFillsEachFrame() {
        var rolling = RollingWindow(sourceFPS: 10, sampleFPS: 10, frames: 2, stride: 1,
                                    preprocessor: CLIPPreprocessor(size: 8))
        #expect(rolling.frameSize == 3 * 8 * 8)
        let gray = { (s: Int) in
            CapturedFrame(image: RGBFrame(width: 16, height: 12, rgb: [UInt8](repeating: 128, count: 16 * 12 * 3),
                                          index: s, timestamp: 0, sourceIndex: s, clamped: false),
                          sequence: s, wallClock: 0, monotonic: 0)
        }
        #expect(rolling.add(gray(0)) == nil)
        let window = rolling.add(gray(1))
        #expect(window?.pixels.count == 2 * 3 * 8 * 8)
        // Red channel of mid-gray: (128/255 − mean) / std.
        let red = (128.0 / 255 - Double(CLIPPreprocessor.clipMean[0])) / Double(CLIPPreprocessor.clipStd[0])
        #expect(abs(Double(window?.pixels[0] ?? 0) - red) < 1e-3)
    }
}

@Suite struct ActionTrackerTests {
    /// Window i covers monotonic seconds [i, i + 1].
    static func window(_ i: Int, _ scores: [String: Float]) -> ActionTracker.Observation {
        ActionTracker.Observation(scores: scores.map { DaemonEvent.Score(label: $0.key, score: $0.value) },
                                  startWallClock: 1_000 + Double(i), endWallClock: 1_001 + Double(i),
                                  startMonotonic: Double(i), endMonotonic: Double(i) + 1, latencyMs: 5)
    }

    /// "start:a" etc. for compact expectations.
    static func summary(_ events: [DaemonEvent]) -> [String] {
        events.map { event in
            switch event {
            case .actionStart(let a): return "start:\(a.label)"
            case .actionUpdate(let a): return "update:\(a.label)"
            case .actionEnd(let a): return "end:\(a.label)"
            default: return event.type
            }
        }
    }

    static func run(_ tracker: inout ActionTracker, _ script: [[String: Float]]) -> [[String]] {
        script.enumerated().map { summary(tracker.observe(window($0.offset, $0.element))) }
    }

    @Test func hysteresisStartsHighAndEndsLow() {
        var tracker = ActionTracker(camera: "door", thresholds: .init(start: 0.6, end: 0.4), epoch: "abcdef0123")
        let steps = Self.run(&tracker, [
            ["wave": 0.5],  // below start: nothing
            ["wave": 0.65], // start
            ["wave": 0.45], // between end and start: still on
            ["wave": 0.4],  // at end: still on
            ["wave": 0.39], // below end: ends
            ["wave": 0.55], // not back above start: nothing
        ])
        #expect(steps == [[], ["start:wave"], ["update:wave"], ["update:wave"], ["end:wave"], []])
        #expect(tracker.activeLabels.isEmpty)
    }

    @Test func eventsCarryTheWindowAndMatchingIDs() {
        var tracker = ActionTracker(camera: "door", thresholds: .init(start: 0.6, end: 0.4), top: 2, epoch: "abcdef0123")
        let start = tracker.observe(Self.window(3, ["wave": 0.7, "sit": 0.2, "run": 0.1]))
        guard case .actionStart(let a) = start.first else { Issue.record("\(start)"); return }
        #expect(a.actionID == "door-abcdef01-1")
        #expect(a.camera == "door" && a.label == "wave" && a.score == 0.7)
        #expect(a.top == [.init(label: "wave", score: 0.7), .init(label: "sit", score: 0.2)])
        #expect(a.windowStart == 1_003 && a.windowEnd == 1_004 && a.windowStartMonotonic == 3 && a.windowEndMonotonic == 4)
        #expect(a.latencyMs == 5)
        let end = tracker.observe(Self.window(4, ["wave": 0.1, "sit": 0.2]))
        guard case .actionEnd(let b) = end.first else { Issue.record("\(end)"); return }
        #expect(b.actionID == a.actionID && b.score == 0.1 && b.windowStartMonotonic == 4)
        // A label left out of a window counts as 0, and the next action gets a new id.
        _ = tracker.observe(Self.window(5, ["wave": 0.9]))
        let gone = tracker.observe(Self.window(6, ["sit": 0.3]))
        guard case .actionEnd(let c) = gone.first else { Issue.record("\(gone)"); return }
        #expect(c.actionID == "door-abcdef01-2" && c.score == 0)
    }

    @Test func labelsAreTrackedIndependently() {
        var tracker = ActionTracker(camera: "c", thresholds: .init(start: 0.5, end: 0.3), epoch: "e")
        let steps = Self.run(&tracker, [
            ["a": 0.6, "b": 0.1],
            ["a": 0.6, "b": 0.5],
            ["a": 0.2, "b": 0.5],
            ["a": 0.2, "b": 0.2],
        ])
        #expect(steps == [["start:a"], ["start:b", "update:a"], ["end:a", "update:b"], ["end:b"]])
    }

    @Test func shortActionsAreDroppedSilently() {
        // Windows are 1 s long and 1 s apart: an action seen in 2 windows has lasted 2 s.
        var tracker = ActionTracker(camera: "c", thresholds: .init(start: 0.6, end: 0.4, minDurationSeconds: 2.5),
                                    epoch: "e")
        let steps = Self.run(&tracker, [
            ["a": 0.7], ["a": 0.5], ["a": 0.1],             // 2 s: never reported
            ["a": 0.7], ["a": 0.5], ["a": 0.5], ["a": 0.3], // confirmed in its 3rd window (3 s)
        ])
        #expect(steps == [[], [], [], [], [], ["start:a"], ["end:a"]])
    }

    @Test func finishEndsWhatStartedAndDropsCandidates() {
        var tracker = ActionTracker(camera: "c", thresholds: .init(start: 0.5, end: 0.3, minDurationSeconds: 1.5),
                                    epoch: "e")
        #expect(tracker.finish().isEmpty)
        _ = Self.run(&tracker, [["a": 0.9], ["a": 0.9, "b": 0.9]]) // a confirmed; b a candidate
        #expect(tracker.activeLabels == ["a"])
        let ends = tracker.finish()
        #expect(Self.summary(ends) == ["end:a"])
        if case .actionEnd(let a) = ends.first { #expect(a.windowEndMonotonic == 2 && a.score == 0.9) }
        #expect(tracker.finish().isEmpty)
        #expect(tracker.activeLabels.isEmpty)
    }

    @Test func percentilesAreNearestRank() {
        #expect(CameraPipeline.percentile([], 0.5) == 0)
        #expect(CameraPipeline.percentile([7], 0.9) == 7)
        let values = (1...10).map(Double.init)
        #expect(CameraPipeline.percentile(values, 0.5) == 5)
        #expect(CameraPipeline.percentile(values, 0.9) == 9)
    }
}

/// Collects events from the pipeline's threads.
final class EventLog: @unchecked Sendable {
    private let lock = NSCondition()
    private var items: [DaemonEvent] = []
    func append(_ event: DaemonEvent) { lock.withLock { items.append(event); lock.broadcast() } }
    var events: [DaemonEvent] { lock.withLock { items } }
    /// Waits until `condition` holds (or 30 s pass) and returns the events.
    func wait(until condition: ([DaemonEvent]) -> Bool) -> [DaemonEvent] {
        let deadline = Date(timeIntervalSinceNow: 30)
        lock.lock()
        defer { lock.unlock() }
        while !condition(items), lock.wait(until: deadline) {}
        return items
    }
}

/// Frames (and connection changes) from a source, collected.
final class FrameLog: @unchecked Sendable {
    private let lock = NSCondition()
    private var frames: [CapturedFrame] = []
    private var end: CameraSourceEnd?
    /// "online", "offline: reason", and "frame N" for each frame, in order.
    private(set) var timeline: [String] = []
    func add(_ frame: CapturedFrame) {
        lock.withLock { frames.append(frame); timeline.append("frame \(frame.sequence)"); lock.broadcast() }
    }
    func status(_ status: CameraSourceStatus) {
        lock.withLock {
            switch status {
            case .online: timeline.append("online")
            case .offline(let reason): timeline.append("offline: \(reason)")
            }
            lock.broadcast()
        }
    }
    var history: [String] { lock.withLock { timeline } }
    /// Waits until `condition` holds for the timeline (or 30 s pass) and returns it.
    func waitTimeline(until condition: ([String]) -> Bool) -> [String] {
        let deadline = Date(timeIntervalSinceNow: 30)
        lock.lock()
        defer { lock.unlock() }
        while !condition(timeline), lock.wait(until: deadline) {}
        return timeline
    }
    func finish(_ reason: CameraSourceEnd) { lock.withLock { end = reason; lock.broadcast() } }
    /// Waits until `condition` holds (or 30 s pass) and returns the frames and end.
    func wait(until condition: @escaping ([CapturedFrame], CameraSourceEnd?) -> Bool) -> ([CapturedFrame], CameraSourceEnd?) {
        let deadline = Date(timeIntervalSinceNow: 30)
        lock.lock()
        defer { lock.unlock() }
        while !condition(frames, end), lock.wait(until: deadline) {}
        return (frames, end)
    }
}

/// A camera that delivers its frames synchronously inside `start`, before the pipeline's
/// inference thread exists: every window but the last finds the slot full.
final class ScriptedSource: CameraSource, @unchecked Sendable {
    let sequences: [Int]
    let fps = 10.0
    init(sequences: [Int]) { self.sequences = sequences }
    func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
               onStatus: @escaping @Sendable (CameraSourceStatus) -> Void,
               onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws {
        onStatus(.online)
        for s in sequences {
            let image = RGBFrame(width: 8, height: 6, rgb: (0..<(8 * 6 * 3)).map { UInt8(($0 * 7 + s) % 256) },
                                 index: s, timestamp: Double(s) / fps, sourceIndex: s, clamped: false)
            onFrame(CapturedFrame(image: image, sequence: s, wallClock: 1_000 + Double(s) / fps,
                                  monotonic: Double(s) / fps))
        }
        onEnd(.failed("camera unplugged"))
    }
    func stop() {}
}

@Suite(.serialized) struct CameraPipelineTests {
    static let videos = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/video")
    static let phone = videos.appendingPathComponent("phone_h264_rot90.mp4").path // 30 frames, 15 fps

    /// A tiny untrained model (as Tests/PipelineTests/VideoClassifierTests.swift makes it).
    static let engine: Result<InferenceEngine, Error> = Result {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-daemon-\(getpid()).m2c").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let context = try ComputeContext(threads: 2)
        try RandomCheckpoint.writeModelFile(preset: .tiny, seed: 3, labels: ["juggling", "surfing", "playing cello"],
                                            frames: 4, to: file, context: context)
        return InferenceEngine(model: try ModelFile.load(path: file, context: context), context: context)
    }

    static func camera(labels: [String]? = ["juggling", "surfing"], head: DaemonConfiguration.Head? = nil,
                       path: String = phone, loop: Bool = false) -> DaemonConfiguration.Camera {
        DaemonConfiguration.Camera(id: "phone", source: .file(path: path, loop: loop), sampleFPS: 15, stride: 4,
                                   frames: 4, head: head, thresholds: .init(start: 0.3, end: 0.2), labels: labels)
    }

    @Test func fileSourcePlaysInRealTimeAndEnds() throws {
        let source = FileFrameSource(path: Self.phone)
        let log = FrameLog()
        try source.start(onFrame: { log.add($0) }, onEnd: { log.finish($0) })
        #expect(source.fps == 15)
        let (frames, end) = log.wait { $1 != nil }
        #expect(end == .endOfStream)
        #expect(frames.map(\.sequence) == Array(0..<30))
        #expect(frames.map { $0.image?.index } == Array(0..<30))
        #expect(frames.allSatisfy { $0.image?.width == 240 && $0.image?.height == 320 }) // upright
        // Paced: frame k is not delivered before k / fps after frame 0.
        for (k, f) in frames.enumerated() {
            #expect(f.monotonic - frames[0].monotonic >= Double(k) / 15 - 1e-3, "frame \(k)")
        }
        #expect(zip(frames, frames.dropFirst()).allSatisfy { $0.wallClock <= $1.wallClock })
    }

    @Test func fileSourceLoopsUntilStopped() throws {
        let source = FileFrameSource(path: Self.phone, loop: true, realTime: false)
        let log = FrameLog()
        try source.start(onFrame: { log.add($0) }, onEnd: { log.finish($0) })
        _ = log.wait { frames, _ in frames.count >= 45 }
        source.stop()
        let (frames, end) = log.wait { $1 != nil }
        #expect(end == .stopped)
        #expect(frames.map(\.sequence) == Array(0..<frames.count))
        #expect(frames[29].image?.index == 29 && frames[30].image?.index == 0 && frames[44].image?.index == 14)
    }

    @Test func fileSourceThatCannotOpenThrows() {
        let path = Self.videos.appendingPathComponent("not_a_video.mp4").path
        #expect(throws: VideoError.self) { try FileFrameSource(path: path).start(onFrame: { _ in }, onEnd: { _ in }) }
    }

    @Test func endToEndOnAPhoneClip() throws {
        let engine = try Self.engine.get()
        let log = EventLog()
        let pipeline = try CameraPipeline(camera: Self.camera(), source: FileFrameSource(path: Self.phone),
                                          engine: engine, epoch: "0123456789abcdef", emit: { log.append($0) })
        #expect(pipeline.scorer.head == .zeroShot && pipeline.scorer.labels == ["juggling", "surfing"])
        pipeline.start()
        #expect(pipeline.wait(timeout: 60))
        let events = log.events
        #expect(events.first == .cameraStatus(.init(camera: "phone", status: .online, reason: nil)))
        #expect(events.last == .cameraStatus(.init(camera: "phone", status: .offline, reason: "end of stream")))

        var open: [String: String] = [:] // id → label
        var starts = 0, ends = 0
        for event in events.dropFirst().dropLast() {
            switch event {
            case .actionStart(let a):
                starts += 1
                #expect(open[a.actionID] == nil)
                #expect(a.score >= 0.3 && a.actionID.hasPrefix("phone-01234567-"))
                #expect(a.top.count == 2 && abs(a.top[0].score + a.top[1].score - 1) < 1e-4)
                #expect(a.windowEndMonotonic > a.windowStartMonotonic)
                #expect(a.windowEnd > 1_600_000_000 && a.latencyMs > 0)
                open[a.actionID] = a.label
            case .actionUpdate(let a):
                #expect(open[a.actionID] == a.label && a.score >= 0.2)
            case .actionEnd(let a):
                ends += 1
                #expect(open.removeValue(forKey: a.actionID) == a.label)
            default:
                Issue.record("unexpected \(event)")
            }
        }
        // Two labels whose scores sum to 1: one is always ≥ 0.3, so something starts; the
        // file's end ends it.
        #expect(starts >= 1 && ends == starts && open.isEmpty)

        let totals = pipeline.totals
        #expect(totals.framesIn == 30)
        #expect(totals.sampled == 30)             // 15 of 15 fps
        #expect(totals.windows == 7)              // after sampled frames 4, 8, …, 28
        #expect(totals.processedWindows >= 1)
        #expect(totals.processedWindows + totals.skippedWindows == 7)
        #expect(totals.droppedFrames == 0)
        let stats = pipeline.stats()
        #expect(stats.camera == "phone" && stats.skippedWindows == totals.skippedWindows && stats.droppedFrames == 0)
        #expect(stats.fpsIn > 0 && stats.fpsSampled == stats.fpsIn)
        #expect(stats.inferenceP50Ms > 0 && stats.inferenceP90Ms >= stats.inferenceP50Ms)
        // The next interval saw no frames.
        #expect(pipeline.stats().fpsIn == 0)
    }

    @Test func busyInferenceSkipsAllButTheLatestWindow() throws {
        var camera = Self.camera()
        camera.sampleFPS = 10
        camera.stride = 1
        let log = EventLog()
        // Frames 6, 7, 8 are lost by the camera.
        let pipeline = try CameraPipeline(camera: camera, source: ScriptedSource(sequences: Array(0..<6) + Array(9..<12)),
                                          engine: try Self.engine.get(), epoch: "e", emit: { log.append($0) })
        pipeline.start()
        #expect(pipeline.wait(timeout: 30))
        let totals = pipeline.totals
        #expect(totals == .init(framesIn: 9, sampled: 9, windows: 6, processedWindows: 1, skippedWindows: 5,
                                droppedFrames: 3))
        let events = log.events
        #expect(events.first?.type == "camera.status")
        #expect(events.last == .cameraStatus(.init(camera: "phone", status: .offline, reason: "camera unplugged")))
        // The one window scored is the last: frames 5, 9, 10, 11.
        guard case .actionStart(let a) = events.dropFirst().first else { Issue.record("\(events)"); return }
        #expect(a.windowStartMonotonic == 0.5 && a.windowEndMonotonic == 1.1)
        // One window: its actions start, and end with the camera (both labels may be ≥ 0.3).
        let types = events.map(\.type)
        let starts = types.filter { $0 == "action.start" }.count
        #expect(starts >= 1)
        #expect(types == ["camera.status"] + Array(repeating: "action.start", count: starts)
                + Array(repeating: "action.end", count: starts) + ["camera.status"])
    }

    @Test func stopEndsALoopingCameraWithTheReason() throws {
        let engine = try Self.engine.get()
        let log = EventLog()
        let pipeline = try CameraPipeline(camera: Self.camera(loop: true),
                                          source: FileFrameSource(path: Self.phone, loop: true),
                                          engine: engine, epoch: "e", emit: { log.append($0) })
        pipeline.start()
        let deadline = Date(timeIntervalSinceNow: 30)
        while pipeline.totals.processedWindows < 1 && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        pipeline.stop()
        #expect(pipeline.wait(timeout: 30))
        let events = log.events
        #expect(events.last == .cameraStatus(.init(camera: "phone", status: .offline, reason: "shutdown")))
        let starts = events.filter { if case .actionStart = $0 { true } else { false } }.count
        let ends = events.filter { if case .actionEnd = $0 { true } else { false } }.count
        #expect(starts >= 1 && ends == starts)
    }

    @Test func sourceThatFailsToStartGoesOffline() throws {
        let log = EventLog()
        let path = Self.videos.appendingPathComponent("not_a_video.mp4").path
        let pipeline = try CameraPipeline(camera: Self.camera(path: path), source: FileFrameSource(path: path),
                                          engine: try Self.engine.get(), epoch: "e", emit: { log.append($0) })
        pipeline.start()
        #expect(pipeline.wait(timeout: 5))
        let events = log.events
        #expect(events.count == 1)
        guard case .cameraStatus(let status) = events.first else { Issue.record("\(events)"); return }
        #expect(status.status == .offline && status.reason?.contains("not_a_video.mp4") == true)
    }

    @Test func headChoice() throws {
        let engine = try Self.engine.get()
        // The converted model's VC head is untrained: auto picks zero-shot over its labels.
        let auto = try WindowScorer(camera: Self.camera(labels: nil), engine: engine)
        #expect(auto.head == .zeroShot && auto.labels == ["juggling", "surfing", "playing cello"])
        let vc = try WindowScorer(camera: Self.camera(labels: nil, head: .vc), engine: engine)
        #expect(vc.head == .vc)
        let output = engine.run(pixels: [Float](repeating: 0, count: 4 * 3 * engine.model.vision.configuration.imageSize
                                                    * engine.model.vision.configuration.imageSize), frames: 4)
        #expect(vc.scores(output) == softmax(output.vcLogits!))
        #expect(auto.scores(output) == output.labelScores)
    }
}

@Suite struct FairGateTests {
    /// Waiters get the gate in the order they asked for it, and the holder that asks again
    /// goes behind them.
    @Test func admitsInArrivalOrder() {
        let gate = FairGate()
        let order = EventOrder()
        let release = DispatchSemaphore(value: 0)
        let holder = Thread {
            gate.withLock { release.wait() }
            gate.withLock { order.add("holder again") }
        }
        holder.start()
        while gate.queued < 1 { usleep(1000) }
        var threads: [Thread] = []
        for name in ["a", "b", "c"] {
            let thread = Thread { gate.withLock { order.add(name) } }
            threads.append(thread)
            let before = gate.queued
            thread.start()
            while gate.queued == before { usleep(1000) }
        }
        release.signal()
        while order.items.count < 4 { usleep(1000) }
        #expect(order.items == ["a", "b", "c", "holder again"])
    }
}

final class EventOrder: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ item: String) { lock.withLock { list.append(item) } }
    var items: [String] { lock.withLock { list } }
}
