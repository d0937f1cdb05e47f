import CV4L2
import Foundation
import Testing
import V4L2Testing
import Video
@testable import Daemon

/// The V4L2 camera source and its pipeline on the scripted fake device: unplug → offline →
/// reopen with backoff → online, gaps and flagged buffers counted as dropped, stalls.
@Suite(.serialized) struct V4L2SourceTests {
    static let request = V4L2Capture.Request(width: 64, height: 48, fps: 10)
    static let gone = "camera /dev/video9: VIDIOC_DQBUF: No such device (ENODEV)"

    static func source(_ driver: ScriptedV4L2Driver, reopenAfter: Double = 30) -> V4L2CameraSource {
        V4L2CameraSource(device: "/dev/video9", request: request, driver: driver, retryDelays: [0.01, 0.02],
                         reopenAfterSeconds: reopenAfter)
    }

    @Test func unpluggedCameraGoesOfflineAndComesBackByItself() throws {
        let driver = ScriptedV4L2Driver()
        // First session: 3 frames, then the device is gone; two opens fail while it is away.
        driver.openResults = [0, -ENOENT, -ENOENT]
        driver.steps = [.frame, .frame, .frame, .fail(ENODEV), .frame, .frame]
        let source = Self.source(driver)
        let log = FrameLog()
        try source.start(onFrame: { log.add($0) }, onStatus: { log.status($0) }, onEnd: { log.finish($0) })
        _ = log.wait { frames, _ in frames.count >= 5 }
        source.stop()
        let (frames, end) = log.wait { $1 != nil }
        #expect(end == .stopped)
        #expect(log.history == ["online", "frame 0", "frame 1", "frame 2", "offline: \(Self.gone)", "online",
                                "frame 0", "frame 1"])
        #expect(source.fps == 10 && source.reopens == 1)
        #expect(driver.callLog.filter { $0.hasPrefix("open") }.count == 4)
        // Buffer timestamps are the driver's CLOCK_MONOTONIC stamps, in order.
        #expect(zip(frames, frames.dropFirst()).allSatisfy { $0.monotonic <= $1.monotonic })
        #expect(frames.allSatisfy { abs($0.monotonic - MonotonicClock.now()) < 30 })
        #expect(driver.descriptorsOpen == 0 && driver.buffersMapped == 0, "nothing leaks across reopens")
    }

    @Test func cameraMissingAtStartIsOfflineUntilItAppears() throws {
        let driver = ScriptedV4L2Driver()
        driver.openResults = [-ENOENT, -EBUSY]
        driver.steps = [.frame]
        let source = Self.source(driver)
        let log = FrameLog()
        try source.start(onFrame: { log.add($0) }, onStatus: { log.status($0) }, onEnd: { log.finish($0) })
        _ = log.wait { frames, _ in frames.count >= 1 }
        source.stop()
        _ = log.wait { $1 != nil }
        #expect(log.history == ["offline: camera /dev/video9: open: No such file or directory (ENOENT)", "online",
                                "frame 0"])
    }

    @Test func cameraThatCannotDoTheFormatFailsAtStart() {
        let driver = ScriptedV4L2Driver(formats: [.yuyv])
        let source = V4L2CameraSource(device: "/dev/video9", request: .init(width: 64, height: 48, fps: 10, format: .nv12),
                                      driver: driver)
        #expect(throws: V4L2Error.self) { try source.start(onFrame: { _ in }, onEnd: { _ in }) }
        #expect(driver.descriptorsOpen == 0)
    }

    @Test func silentDeviceIsReopened() throws {
        let driver = ScriptedV4L2Driver()
        let source = Self.source(driver, reopenAfter: 0.1)
        let log = FrameLog()
        try source.start(onFrame: { log.add($0) }, onStatus: { log.status($0) }, onEnd: { log.finish($0) })
        _ = log.waitTimeline { $0.count >= 3 }
        source.stop()
        _ = log.wait { $1 != nil }
        let history = log.history
        #expect(history.first == "online")
        #expect(history.dropFirst().first?.hasPrefix("offline: camera /dev/video9: VIDIOC_DQBUF: no frame for") == true)
        #expect(history.dropFirst(2).first == "online")
    }

    /// Events of the whole pipeline: drops counted, actions end at the unplug, status order.
    @Test func pipelineReportsUnplugAndCountsDrops() throws {
        let engine = try CameraPipelineTests.engine.get()
        let driver = ScriptedV4L2Driver()
        driver.openResults = [0, -ENODEV]
        driver.steps = [.frame, .frame, .flaggedError, .frame, .skip(3)] + Array(repeating: .frame, count: 12)
            + [.fail(ENODEV)] + Array(repeating: .frame, count: 8)
        var camera = CameraPipelineTests.camera(labels: ["juggling", "surfing"])
        camera.sampleFPS = 10
        camera.thresholds = .init(start: 0.01, end: 0.005) // every window starts an action
        let log = EventLog()
        let pipeline = try CameraPipeline(camera: camera, source: Self.source(driver), engine: engine,
                                          epoch: "0123456789abcdef", emit: { log.append($0) })
        pipeline.start()
        let statuses = { (events: [DaemonEvent]) -> [String] in
            events.compactMap {
                if case .cameraStatus(let s) = $0 { return s.status.rawValue + (s.reason.map { ": \($0)" } ?? "") }
                return nil
            }
        }
        _ = log.wait { statuses($0).count >= 3 && driver.pendingSteps == 0 }
        // Let the last frames reach the pipeline before stopping.
        _ = log.wait { _ in pipeline.totals.framesIn >= 3 + 12 + 8 }
        pipeline.stop()
        #expect(pipeline.wait(timeout: 30))
        let events = log.events
        #expect(statuses(events) == ["online", "offline: \(Self.gone)", "online", "offline: shutdown"])
        let totals = pipeline.totals
        #expect(totals.framesIn == 3 + 12 + 8)
        #expect(totals.droppedFrames == 1 + 3, "one flagged buffer and a gap of three")
        // Every action that started before the unplug ended before the offline status.
        let unplug = events.firstIndex { if case .cameraStatus(let s) = $0 { return s.status == .offline }; return false }!
        var open = Set<String>()
        for event in events[..<unplug] {
            if case .actionStart(let a) = event { open.insert(a.actionID) }
            if case .actionEnd(let a) = event { open.remove(a.actionID) }
        }
        #expect(open.isEmpty)
        #expect(events[..<unplug].contains { if case .actionStart = $0 { return true }; return false })
    }

    @Test func pipelineReportsAStallAndTheRecovery() throws {
        let engine = try CameraPipelineTests.engine.get()
        let driver = ScriptedV4L2Driver()
        driver.steps = Array(repeating: .frame, count: 4)
        var camera = CameraPipelineTests.camera()
        camera.stallTimeoutSeconds = 0.2
        let log = EventLog()
        let pipeline = try CameraPipeline(camera: camera, source: Self.source(driver), engine: engine,
                                          epoch: "0123456789abcdef", emit: { log.append($0) })
        pipeline.start()
        let stalled = { (events: [DaemonEvent]) in
            events.contains { if case .cameraStatus(let s) = $0 { return s.status == .stalled }; return false }
        }
        _ = log.wait(until: stalled)
        driver.script { $0.steps = Array(repeating: .frame, count: 4) }
        _ = log.wait { _ in pipeline.totals.framesIn >= 8 }
        pipeline.stop()
        #expect(pipeline.wait(timeout: 30))
        let statuses = log.events.compactMap { event -> String? in
            if case .cameraStatus(let s) = event { return s.status.rawValue }
            return nil
        }
        #expect(statuses == ["online", "stalled", "online", "offline"])
        let reason = log.events.compactMap { event -> String? in
            if case .cameraStatus(let s) = event, s.status == .stalled { return s.reason }
            return nil
        }.first
        #expect(reason?.hasPrefix("no frame for 0.") == true)
    }
}
