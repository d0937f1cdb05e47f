import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Daemon

/// The `metrics:` section, and the metric names and types in the text format. The HTTP
/// endpoint is tested on a real m2clipd (CLITests' MetricsDaemonTests): in this process the
/// server's tasks would share Swift's cooperative pool with tests that block it.
@Suite struct MetricsTests {
    static let base = """
        model: model.m2c
        socket: {path: events.sock}
        cameras: [{id: door, source: {file: clip.mp4}}]

        """

    func load(_ section: String) throws -> DaemonConfiguration {
        let scratch = try ConfigTests.Scratch()
        return try scratch.load(Self.base + section)
    }

    @Test func sectionIsOptionalAndDefaultsToLoopback() throws {
        #expect(try load("").metrics == nil)
        let metrics = try #require(try load("metrics: {}").metrics)
        #expect(metrics == .init(listen: "127.0.0.1:9464", allowRemote: false))
        func address(_ section: String) throws -> String? {
            try load(section).metrics?.address.map { "\($0.host) \($0.port)" }
        }
        #expect(try address("metrics: {}") == "127.0.0.1 9464")
        #expect(try address("metrics: {listen: \"[::1]:9100\"}") == "::1 9100")
        #expect(try address("metrics: {listen: \"localhost:9100\"}") == "127.0.0.1 9100")
        #expect(try address("metrics: {listen: \"0.0.0.0:9100\", allow_remote: true}") == "0.0.0.0 9100")
    }

    static let mistakes: [(String, String)] = [
        ("metrics: {listen: \"127.0.0.1\"}", "metrics.listen: \"127.0.0.1\" is not an address like"),
        ("metrics: {listen: \"::1:9100\"}", "metrics.listen: \"::1:9100\" is not an address like"),
        ("metrics: {listen: \"prometheus.lan:9100\"}", "metrics.listen: \"prometheus.lan:9100\" is not an address"),
        ("metrics: {listen: \"127.0.0.1:0\"}", "metrics.listen: port must be in 1...65535 (got 0)"),
        ("metrics: {listen: \"127.0.0.1:70000\"}", "metrics.listen: port must be in 1...65535 (got 70000)"),
        ("metrics: {listen: \"0.0.0.0:9464\"}", "metrics.listen: 0.0.0.0 is not a loopback address"),
        ("metrics: {listen: \"[::]:9464\"}", "metrics.listen: :: is not a loopback address"),
        ("metrics: {port: 9464}", "metrics.port: unknown key"),
        ("metrics: {allow_remote: maybe}", "metrics.allow_remote: expected true or false"),
    ]

    @Test(arguments: mistakes.indices)
    func eachMistakeNamesTheField(case index: Int) throws {
        let (section, expected) = Self.mistakes[index]
        let scratch = try ConfigTests.Scratch()
        #expect {
            try scratch.load(Self.base + section)
        } throws: { error in
            "\(error)".hasPrefix("config \(scratch.file): \(expected)")
        }
    }

    /// The text format of a fresh set of metrics with one camera that saw a little.
    func exposition() -> String {
        let metrics = DaemonMetrics(version: "1.2.3")
        let door = metrics.camera("door")
        metrics.watch(subscribers: { 3 })
        door.frames.increment(by: 10)
        door.inferenceDuration.recordSeconds(0.2)
        door.observe(.cameraStatus(.init(camera: "door", status: .online, reason: nil)))
        return String(decoding: metrics.exposition(), as: UTF8.self)
    }

    @Test func namesTypesAndUnitsFollowPrometheusPractice() throws {
        let text = exposition()
        var types: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            types[String(parts[2])] = String(parts[3])
        }
        typealias Name = DaemonMetrics.Name
        let expected = [
            Name.buildInfo: "gauge", Name.cameraUp: "gauge", Name.subscribers: "gauge",
            Name.frames: "counter", Name.sampledFrames: "counter", Name.droppedFrames: "counter",
            Name.windows: "counter", Name.processedWindows: "counter", Name.skippedWindows: "counter",
            Name.inferenceDuration: "histogram", Name.eventLatency: "histogram",
        ]
        #expect(types == expected, "\(text)")
        for (name, type) in types {
            #expect(name.hasPrefix("m2clipd_"))
            #expect((type == "counter") == name.hasSuffix("_total"), "\(name) is a \(type)")
            if type == "histogram" { #expect(name.hasSuffix("_seconds"), "\(name): base unit seconds") }
        }
        #expect(text.contains("m2clipd_build_info{version=\"1.2.3\"} 1"), "\(text)")
        #expect(text.contains("m2clipd_frames_total{camera=\"door\"} 10"), "\(text)")
        #expect(text.contains("m2clipd_camera_up{camera=\"door\"} 1"), "\(text)")
        #expect(text.contains("m2clipd_subscribers 3"), "\(text)")
        // 0.2 s in seconds, counted from the 0.25 s bucket up; buckets span 50 ms to 30 s.
        #expect(text.contains("m2clipd_inference_duration_seconds_bucket{camera=\"door\",le=\"0.1\"} 0"), "\(text)")
        #expect(text.contains("m2clipd_inference_duration_seconds_bucket{camera=\"door\",le=\"0.25\"} 1"), "\(text)")
        #expect(text.contains("m2clipd_inference_duration_seconds_bucket{camera=\"door\",le=\"0.05\"}"))
        #expect(text.contains("m2clipd_inference_duration_seconds_bucket{camera=\"door\",le=\"30.0\"}")
            || text.contains("m2clipd_inference_duration_seconds_bucket{camera=\"door\",le=\"30\"}"), "\(text)")
        #expect(text.contains("m2clipd_inference_duration_seconds_sum{camera=\"door\"} 0.2"), "\(text)")
    }

    /// History and snapshot counters: counters fed from their running totals, so each scrape
    /// shows the total so far (not twice what two scrapes saw), gauges for the backlog.
    @Test func historyAndSnapshotSeries() throws {
        let scratch = try ConfigTests.Scratch()
        let history = EventHistory(path: scratch.database, retention: .init(maxAgeSeconds: 1e9, maxBytes: 1 << 30),
                                   log: { _, _ in })
        defer { history.close() }
        let root = scratch.dir.appendingPathComponent("snapshots").path
        let snapshots = SnapshotWriter(configuration: .init(quality: 80), directory: root, log: { _, _ in })
        let metrics = DaemonMetrics(version: "1")
        metrics.watch(history: history)
        metrics.watch(snapshots: snapshots)
        let bus = EventBus(epoch: "run-1", ringCapacity: 8, history: history)
        bus.publish(.actionStart(eventAction("a", camera: "door", label: "waving")))
        bus.publish(.actionEnd(eventAction("a", camera: "door", label: "waving")))
        let first = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(first.contains("\(DaemonMetrics.Name.historyStored) 2"), "\(first)")
        bus.publish(.actionStart(eventAction("b", camera: "door", label: "waving")))
        let second = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(second.contains("\(DaemonMetrics.Name.historyStored) 3"), "\(second)")
        #expect(second.contains("\(DaemonMetrics.Name.historyWriting) 1"), "\(second)")
        #expect(second.contains("\(DaemonMetrics.Name.historyPending) 0"), "\(second)")
        #expect(second.contains("# TYPE \(DaemonMetrics.Name.historyWriteFailures) counter"), "\(second)")
        for name in [DaemonMetrics.Name.snapshotsWritten, DaemonMetrics.Name.snapshotsDropped,
                     DaemonMetrics.Name.snapshotsFailed, DaemonMetrics.Name.snapshotsDeleted] {
            #expect(second.contains("# TYPE \(name) counter") && name.hasSuffix("_total"), "\(name): \(second)")
        }
    }

    @Test func sameCameraIdKeepsItsSeries() {
        let metrics = DaemonMetrics(version: "1")
        metrics.camera("door").frames.increment(by: 2)
        metrics.camera("door").frames.increment(by: 3)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(text.contains("m2clipd_frames_total{camera=\"door\"} 5"), "\(text)")
    }

    /// The pipeline counts into its camera's series what it counts in `totals`.
    @Test func pipelineCountsMatchItsTotals() throws {
        var camera = CameraPipelineTests.camera()
        camera.stride = 1
        let metrics = DaemonMetrics(version: "1")
        // Frames 6, 7, 8 are lost by the camera; every window but the last finds the slot full.
        let pipeline = try CameraPipeline(camera: camera, source: ScriptedSource(sequences: Array(0..<6) + Array(9..<12)),
                                          engine: try CameraPipelineTests.engine.get(), epoch: "e",
                                          metrics: metrics.camera("phone"), emit: { _ in })
        pipeline.start()
        #expect(pipeline.wait(timeout: 30))
        let totals = pipeline.totals
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        typealias Name = DaemonMetrics.Name
        for (name, value) in [(Name.frames, totals.framesIn), (Name.sampledFrames, totals.sampled),
                              (Name.windows, totals.windows), (Name.processedWindows, totals.processedWindows),
                              (Name.skippedWindows, totals.skippedWindows), (Name.droppedFrames, totals.droppedFrames)] {
            #expect(text.contains("\(name){camera=\"phone\"} \(value)\n"), "\(name) should be \(value): \(text)")
        }
        #expect(text.contains("m2clipd_inference_duration_seconds_count{camera=\"phone\"} \(totals.processedWindows)\n"))
        #expect(text.contains("m2clipd_camera_up{camera=\"phone\"} 0.0"), "offline at the end: \(text)")
    }
}
