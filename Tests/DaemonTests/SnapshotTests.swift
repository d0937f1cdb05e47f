import Foundation
import Testing
import Video
import SafeTensors
@testable import Daemon
#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under /tmp, removed by the caller.
private func temporaryDirectory(_ tag: String) -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-\(tag)-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Lines a writer logged.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ line: String) { lock.withLock { list.append(line) } }
    var lines: [String] { lock.withLock { list } }
}

private func gray(_ level: UInt8, width: Int = 32, height: Int = 24) -> RGBFrame {
    RGBFrame(width: width, height: height, rgb: [UInt8](repeating: level, count: width * height * 3), index: 0,
             timestamp: 0, sourceIndex: 0, clamped: false)
}

private func job(_ id: String, score: Float = 0.7, frame: RGBFrame = gray(128)) -> SnapshotWriter.Job {
    // 2026-12-07 12:00:00 UTC.
    SnapshotWriter.Job(actionID: id, camera: "door", label: "wave", score: score, frameTime: 1_796_644_800, frame: frame)
}

@Suite struct SnapshotRetentionTests {
    typealias File = SnapshotRetention.StoredFile

    /// Age first, then bytes, always oldest first; a newer file never goes before an older one.
    @Test func deletesTheOldestFirst() {
        let now = 1_000_000.0
        let files = [File(path: "c", modified: now - 10, bytes: 100), File(path: "a", modified: now - 30, bytes: 100),
                     File(path: "d", modified: now - 5, bytes: 100), File(path: "b", modified: now - 20, bytes: 100)]
        // Nothing too old, 400 bytes against 250: the two oldest go.
        #expect(SnapshotRetention.victims(files, now: now, maxAge: 100, maxBytes: 250).map(\.path) == ["a", "b"])
        // Within budget, but a and b are older than 15 s.
        #expect(SnapshotRetention.victims(files, now: now, maxAge: 15, maxBytes: 1_000).map(\.path) == ["a", "b"])
        #expect(SnapshotRetention.victims(files, now: now, maxAge: 100, maxBytes: 400).isEmpty)
        #expect(SnapshotRetention.victims(files, now: now, maxAge: 100, maxBytes: 0).map(\.path) == ["a", "b", "c", "d"])
        // A temporary file a crash left goes whatever its age, and does not count against the rest.
        let torn = files + [File(path: "door/.e.jpg.tmp-41-9f3a", modified: now, bytes: 1_000)]
        #expect(SnapshotRetention.victims(torn, now: now, maxAge: 100, maxBytes: 400).map(\.path) == ["door/.e.jpg.tmp-41-9f3a"])
    }

    /// On disk: the oldest files by modification time go, and the day directories they leave
    /// empty with them; the snapshots directory itself stays.
    @Test func pruneRemovesFilesAndEmptyDirectories() throws {
        let root = temporaryDirectory("retention")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let now = Date().timeIntervalSince1970
        let layout = [("door/2026-12-01/a.jpg", 6.0), ("door/2026-12-02/b.jpg", 5.0), ("yard/2026-12-02/c.jpg", 4.0),
                      ("door/2026-12-03/d.jpg", 1.0)]
        for (name, daysOld) in layout {
            let path = root + "/" + name
            try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                                    withIntermediateDirectories: true)
            try Data(repeating: 7, count: 1_000).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: now - daysOld * 86_400)],
                                                  ofItemAtPath: path)
        }
        // Older than 5.5 days: a. Then 3000 bytes left against 2500: b, the oldest of the rest.
        let result = SnapshotRetention.prune(root, now: now, maxAge: 5.5 * 86_400, maxBytes: 2_500, log: { _, _ in })
        #expect(result.deleted == 2 && result.remaining == 2_000)
        let fm = FileManager.default
        #expect(!fm.fileExists(atPath: root + "/door/2026-12-01") && !fm.fileExists(atPath: root + "/door/2026-12-02"))
        #expect(fm.fileExists(atPath: root + "/yard/2026-12-02/c.jpg") && fm.fileExists(atPath: root + "/door/2026-12-03/d.jpg"))
        _ = SnapshotRetention.prune(root, now: now, maxAge: 1, maxBytes: 2_500, log: { _, _ in })
        #expect(try fm.contentsOfDirectory(atPath: root).isEmpty)
    }
}

@Suite struct SnapshotWriterTests {
    static let settings = DaemonConfiguration.Snapshots(quality: 80)

    @Test func writesAJPEGUnderCameraAndDay() throws {
        let root = temporaryDirectory("snapshots")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let reported = LogLines()
        let writer = SnapshotWriter(configuration: Self.settings, directory: root, log: { _, _ in },
                                    written: { job, snapshot, jpeg in reported.add("\(job.actionID) \(snapshot.path) \(jpeg.count)") })
        writer.start()
        #expect(writer.submit(job("door-1/x")))
        #expect(writer.waitIdle(timeout: 10))
        let path = root + "/door/2026-12-07/door-1_x.jpg"
        let snapshot = try #require(writer.snapshot(for: "door-1/x"))
        #expect(snapshot == DaemonEvent.Snapshot(path: path, frameTime: 1_796_644_800, score: 0.7))
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(Array(bytes.prefix(2)) == [0xFF, 0xD8])
        #expect(reported.lines == ["door-1/x \(path) \(bytes.count)"])
        // The end takes it; later events of the same id get none.
        #expect(writer.snapshot(for: "door-1/x", ending: true) == snapshot)
        #expect(writer.snapshot(for: "door-1/x") == nil)
        writer.stop(timeout: 5)
        #expect(writer.totals == .init(written: 1, dropped: 0, failed: 0, deleted: 0))
        #expect(SnapshotWriter.component("..") == "_." && SnapshotWriter.component("") == "_")
    }

    /// A newer best of a queued action replaces its job; a full queue drops and counts.
    @Test func queueCoalescesPerActionAndDropsWhenFull() {
        let writer = SnapshotWriter(configuration: Self.settings, directory: "/nonexistent", capacity: 2, log: { _, _ in })
        #expect(writer.submit(job("a", score: 0.6)))
        #expect(writer.submit(job("b")))
        #expect(writer.submit(job("a", score: 0.9)))   // replaces a's job
        #expect(!writer.submit(job("c")))              // full
        #expect(writer.totals.dropped == 1)
    }

    /// A full disk part-way through a write: the failure is counted and logged with the file
    /// name, neither the snapshot nor its temporary file is left, the previous version stays
    /// whole, and the next write succeeds once there is room again.
    @Test func fullDiskLeavesNoTornFile() throws {
        let root = temporaryDirectory("fulldisk")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let disk = Disk()
        var calls = FileCalls.live
        calls.write = { fd, bytes in
            let room = disk.take(bytes.count)
            guard room > 0 else { return .failure(Errno(code: ENOSPC)) }
            return FileCalls.live.write(fd, UnsafeRawBufferPointer(rebasing: bytes[..<room]))
        }
        let log = LogLines()
        let writer = SnapshotWriter(configuration: Self.settings, directory: root, calls: calls, log: { log.add($1) })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let path = root + "/door/2026-12-07/a.jpg"
        writer.submit(job("a", score: 0.6, frame: gray(50)))
        #expect(writer.waitIdle(timeout: 10))
        let first = try Data(contentsOf: URL(fileURLWithPath: path))

        disk.room = 100 // each of the next files gets 100 bytes in, then ENOSPC
        writer.submit(job("a", score: 0.9, frame: gray(200)))
        writer.submit(job("b", score: 0.9, frame: gray(200)))
        #expect(writer.waitIdle(timeout: 10))
        #expect(writer.totals.failed == 2 && writer.totals.written == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == first)           // old version, whole
        #expect(!FileManager.default.fileExists(atPath: root + "/door/2026-12-07/b.jpg"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/door/2026-12-07") == ["a.jpg"]) // no temp
        #expect(writer.snapshot(for: "a")?.score == 0.6)
        #expect(log.lines.contains { $0.contains(root + "/door/2026-12-07/b.jpg") && $0.contains("No space left on device") },
                "\(log.lines)")

        disk.room = nil
        writer.submit(job("b", score: 0.9, frame: gray(200)))
        #expect(writer.waitIdle(timeout: 10))
        #expect(writer.totals.written == 2)
        #expect(FileManager.default.fileExists(atPath: root + "/door/2026-12-07/b.jpg"))
    }

    /// Past the byte budget, the writer deletes the oldest snapshots (the newest stays).
    @Test func byteBudgetDeletesTheOldest() throws {
        let root = temporaryDirectory("budget")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // One 32×24 gray JPEG is a few hundred bytes; a budget of 1 KB holds a few.
        var settings = Self.settings
        settings.maxMB = 1.0 / 1024
        let writer = SnapshotWriter(configuration: settings, directory: root, log: { _, _ in })
        writer.start()
        defer { writer.stop(timeout: 5) }
        var paths: [String] = []
        for i in 0..<12 {
            writer.submit(job("a\(i)"))
            #expect(writer.waitIdle(timeout: 10))
            paths.append(root + "/door/2026-12-07/a\(i).jpg")
            usleep(20_000) // distinct modification times
        }
        let kept = paths.filter { FileManager.default.fileExists(atPath: $0) }
        #expect(writer.totals.deleted > 0 && kept.count + writer.totals.deleted == 12)
        #expect(kept == Array(paths.suffix(kept.count)), "kept \(kept)") // the newest
        let total = kept.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
        #expect(total <= 1024)
    }
}

/// A file system's free space for the scripted `write`: nil is unlimited; each write takes
/// what fits, and the first write that finds no room fails with ENOSPC (and refills it for
/// the next file, so every file is torn the same way).
final class Disk: @unchecked Sendable {
    private let lock = NSLock()
    private var free: Int?
    private var size: Int?
    var room: Int? {
        get { lock.withLock { free } }
        set { lock.withLock { free = newValue; size = newValue } }
    }
    func take(_ count: Int) -> Int {
        lock.withLock {
            guard let left = free else { return count }
            if left == 0 { free = size; return 0 }
            let n = min(left, count)
            free = left - n
            return n
        }
    }
}

@Suite struct SnapshotConfigurationTests {
    static func parse(_ section: String, stateDir: Bool = true) throws -> DaemonConfiguration {
        let scratch = try ConfigTests.Scratch()
        let yaml = """
            model: model.m2c
            socket: {path: run/events.sock}
            cameras: [{id: a, source: {file: clip.mp4}}]
            \(stateDir ? "state_dir: run" : "")
            \(section)
            """
        return try DaemonConfiguration.parse(yaml: yaml, file: scratch.file, environment: [:])
    }

    @Test func sectionWithDefaultsAndValues() throws {
        #expect(try Self.parse("").snapshots == nil)
        #expect(try Self.parse("snapshots: {}").snapshots == .init())
        let set = try #require(try Self.parse("snapshots: {quality: 60, max_width: 640, retention_days: 2, max_mb: 50}").snapshots)
        #expect(set == .init(enabled: true, quality: 60, maxWidth: 640, retentionDays: 2, maxMB: 50))
        #expect(set.maxBytes == 50 * 1024 * 1024)
        // Switched off, it needs no state directory.
        #expect(try Self.parse("snapshots: {enabled: false}", stateDir: false).snapshots?.enabled == false)
    }

    @Test(arguments: [
        ("snapshots: {quality: 0}", "snapshots.quality", "must be in 1...100 (got 0)"),
        ("snapshots: {quality: 101}", "snapshots.quality", "must be in 1...100 (got 101)"),
        ("snapshots: {max_width: 8}", "snapshots.max_width", "must be at least 16"),
        ("snapshots: {retention_days: 0}", "snapshots.retention_days", "must be positive"),
        ("snapshots: {max_mb: -1}", "snapshots.max_mb", "must be positive"),
        ("snapshots: {clips: true}", "snapshots.clips", "unknown key"),
        ("snapshots: {quality: high}", "snapshots.quality", "expected an integer"),
    ])
    func mistakesNameTheField(section: String, field: String, message: String) {
        #expect {
            try Self.parse(section)
        } throws: { error in
            let e = error as? ConfigurationError
            return e?.field == field && e?.message.contains(message) == true
        }
    }

    @Test func enabledNeedsAStateDirectory() {
        #expect {
            try Self.parse("snapshots: {}", stateDir: false)
        } throws: { error in
            let e = error as? ConfigurationError
            return e?.field == "snapshots" && e?.message.contains("needs state_dir") == true
        }
    }
}

@Suite struct ActionTrackerBestTests {
    static func window(_ i: Int, _ score: Float) -> ActionTracker.Observation {
        var w = ActionTrackerTests.window(i, ["wave": score])
        w.frame = RGBFrame(width: 1, height: 1, rgb: [UInt8(i), 0, 0], index: i, timestamp: 0, sourceIndex: i, clamped: false)
        return w
    }

    /// The best frame counts from the window that opened the candidate (before the minimum
    /// duration confirms it), is handed out once when the action starts and again only when a
    /// later window beats it; the end window (below `end`) never is one.
    @Test func bestFrameIsTheTopScoringWindowsLastFrame() {
        var tracker = ActionTracker(camera: "c", thresholds: .init(start: 0.6, end: 0.4, minDurationSeconds: 1.5), epoch: "e")
        var handed: [[String]] = []
        for (i, score) in [0.9, 0.7, 0.8, 0.95, 0.5, 0.3].enumerated() {
            _ = tracker.observe(Self.window(i, Float(score)))
            handed.append(tracker.takeBests().map { "\($0.frame.rgb[0])@\($0.score)@\($0.frameTime)" })
        }
        // Window 0 opens (not confirmed), window 1 confirms: its best is window 0's frame.
        #expect(handed == [[], ["0@0.9@1001.0"], [], ["3@0.95@1004.0"], [], []])
        // Without frames nothing is kept.
        var plain = ActionTracker(camera: "c", thresholds: .init(start: 0.6, end: 0.4), epoch: "e")
        _ = plain.observe(ActionTrackerTests.window(0, ["wave": 0.9]))
        #expect(plain.takeBests().isEmpty)
    }
}

/// A file camera that also notes which file frame each capture time carries.
final class RecordingSource: CameraSource, @unchecked Sendable {
    let inner: FileFrameSource
    private let lock = NSLock()
    private var indices: [Double: Int] = [:]
    init(_ inner: FileFrameSource) { self.inner = inner }
    var fps: Double { inner.fps }
    func start(onFrame: @escaping @Sendable (CapturedFrame) -> Void,
               onStatus: @escaping @Sendable (CameraSourceStatus) -> Void,
               onEnd: @escaping @Sendable (CameraSourceEnd) -> Void) throws {
        try inner.start(onFrame: { [self] frame in
            if let index = frame.image?.index { lock.withLock { indices[frame.wallClock] = index } }
            onFrame(frame)
        }, onStatus: onStatus, onEnd: onEnd)
    }
    func stop() { inner.stop() }
    /// The file's display index of the frame captured at `wallClock`.
    func index(at wallClock: Double) -> Int? { lock.withLock { indices[wallClock] } }
}

/// Snapshots from a running pipeline: the phone clip as a file camera.
@Suite(.serialized) struct SnapshotPipelineTests {
    /// Each action gets a JPEG of the last frame of its best-scoring window: the file on disk
    /// is the last version written, whose score is the action's top score among its events
    /// and whose frame time is that window's end; decoded, it matches the clip's frame for that
    /// time (decoded independently with VideoFile) within the encoder's bound (31 dB, see
    /// JPEGEncoderTests) and is further from the clip's other frames. Events name the snapshot
    /// once written, and the end event names the same file.
    @Test func actionSnapshotShowsTheBestWindowsLastFrame() throws {
        let engine = try CameraPipelineTests.engine.get()
        let root = temporaryDirectory("pipeline-snapshots")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let written = SnapshotLog()
        let writer = SnapshotWriter(configuration: .init(quality: 90), directory: root, log: { _, _ in },
                                    written: { job, snapshot, _ in written.add(job.actionID, snapshot) })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let source = RecordingSource(FileFrameSource(path: CameraPipelineTests.phone))
        let log = EventLog()
        let pipeline = try CameraPipeline(camera: CameraPipelineTests.camera(), source: source, engine: engine,
                                          epoch: "0123456789abcdef", snapshots: writer, emit: { log.append($0) })
        pipeline.start()
        #expect(pipeline.wait(timeout: 60))
        #expect(writer.waitIdle(timeout: 10))
        #expect(pipeline.totals.framesIn == 30)

        var actions: [String: [DaemonEvent.Action]] = [:]  // start and updates, by id
        var ends: [String: DaemonEvent.Action] = [:]
        for event in log.events {
            switch event {
            case .actionStart(let a), .actionUpdate(let a): actions[a.actionID, default: []].append(a)
            case .actionEnd(let a): ends[a.actionID] = a
            default: break
            }
        }
        #expect(!actions.isEmpty)
        let clip = try VideoFile(path: CameraPipelineTests.phone)
        for (id, events) in actions {
            // The tracker keeps the first window with the top score.
            let best = events.reduce(events[0]) { $1.score > $0.score ? $1 : $0 }
            let final = try #require(written.last(id), "no snapshot for \(id)")
            #expect(final.score == best.score && final.frameTime == best.windowEnd, "\(id): \(final) vs \(best)")
            #expect(final.path == root + "/phone/" + Self.day(final.frameTime) + "/\(id).jpg")
            // Unless the best is the action's last window (the end may come before its write).
            #expect(ends[id]?.snapshot?.path == final.path || best.windowEnd == events.last!.windowEnd,
                    "\(id): end event names the file")
            for a in events { if let s = a.snapshot { #expect(s.path == final.path && s.score <= best.score) } }

            let jpeg = try VideoFile(path: final.path)
            #expect(jpeg.codecName == "mjpeg")
            let decoded = try jpeg.frames(at: [0])[0]
            let index = try #require(source.index(at: final.frameTime))
            let frames = try clip.frames(at: [index, index >= 15 ? 0 : 29])
            #expect(decoded.width == frames[0].width && decoded.height == frames[0].height)
            let psnr = decoded.psnr(against: frames[0])
            #expect(psnr > 31, "\(id): snapshot vs frame \(index): \(psnr) dB")
            #expect(decoded.psnr(against: frames[1]) < psnr)
        }
    }

    /// Every write failing (a full disk): capture and inference go on — every frame is taken,
    /// every action starts and ends — events name no snapshot, and the failures are counted.
    @Test func failingDiskDoesNotStopThePipeline() throws {
        let engine = try CameraPipelineTests.engine.get()
        let root = temporaryDirectory("pipeline-fulldisk")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var calls = FileCalls.live
        calls.write = { _, _ in .failure(Errno(code: ENOSPC)) }
        let lines = LogLines()
        let writer = SnapshotWriter(configuration: .init(), directory: root, calls: calls, log: { lines.add($1) })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let log = EventLog()
        let pipeline = try CameraPipeline(camera: CameraPipelineTests.camera(),
                                          source: FileFrameSource(path: CameraPipelineTests.phone, realTime: false),
                                          engine: engine, epoch: "e", snapshots: writer, emit: { log.append($0) })
        pipeline.start()
        #expect(pipeline.wait(timeout: 60))
        #expect(writer.waitIdle(timeout: 10))
        let totals = pipeline.totals
        #expect(totals.framesIn == 30 && totals.windows == 7)
        let actions = log.events.compactMap { event -> DaemonEvent.Action? in
            switch event {
            case .actionStart(let a), .actionUpdate(let a), .actionEnd(let a): return a
            default: return nil
            }
        }
        #expect(!actions.isEmpty && actions.allSatisfy { $0.snapshot == nil })
        #expect(log.events.last?.type == "camera.status")
        #expect(writer.totals.failed >= 1 && writer.totals.written == 0)
        #expect(lines.lines.count == writer.totals.failed && lines.lines.allSatisfy { $0.contains(root + "/phone/") })
        let left = SnapshotRetention.scan(root)
        #expect(left.isEmpty, "\(left)")
    }

    static func day(_ time: Double) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: Date(timeIntervalSince1970: time))
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }
}

/// What a writer reported, per action, in order.
final class SnapshotLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String: [DaemonEvent.Snapshot]] = [:]
    func add(_ id: String, _ snapshot: DaemonEvent.Snapshot) { lock.withLock { items[id, default: []].append(snapshot) } }
    func last(_ id: String) -> DaemonEvent.Snapshot? { lock.withLock { items[id]?.last } }
}
