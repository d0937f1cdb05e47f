import Foundation
import Testing
import Video
@testable import Daemon
#if canImport(Glibc)
import Glibc
#endif

private func temporaryDirectory(_ tag: String) -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-\(tag)-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The packets of a file's video stream, in decode order, each once (VideoFile reads some
/// twice when it seeks to a keyframe it is about to reach).
private func packets(of path: String) throws -> (video: VideoFile, packets: [EncodedPacket]) {
    let list = PacketList()
    let video = try VideoFile(path: path, packets: { list.add($0) })
    _ = try video.frames(at: Array(0..<video.frameCount))
    var once: [EncodedPacket] = []
    for packet in list.items where packet.order > once.last?.order ?? .min { once.append(packet) }
    return (video, once)
}

private final class PacketList: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [EncodedPacket] = []
    func add(_ packet: EncodedPacket) { lock.withLock { list.append(packet) } }
    var items: [EncodedPacket] { lock.withLock { list } }
}

/// What a clip writer reported.
private final class WrittenClips: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [ClipWriter.Written] = []
    func add(_ clip: ClipWriter.Written) { lock.withLock { list.append(clip) } }
    var items: [ClipWriter.Written] { lock.withLock { list } }
}

@Suite struct ClipRecorderTests {
    /// The ring starts at a keyframe, ignores packets read again after a seek, and drops
    /// whole groups of pictures from the front past its seconds or bytes.
    @Test func ringIsBoundedAndStartsAtAKeyframe() throws {
        let (video, all) = try packets(of: CameraPipelineTests.phone)
        #expect(all.count == 30 && all[0].isKeyframe)
        let stream = try #require(video.encodedStream)
        #expect(stream.codecName == "h264")

        let ring = ClipRecorder(camera: "c", maxSeconds: 1.0, maxBytes: 1 << 30)
        ring.begin()
        ring.attach(stream)
        for packet in all.dropFirst() { ring.add(packet) } // no keyframe until 0.667 s: skipped
        for packet in all.prefix(20) { ring.add(packet) }  // read again: ignored
        ring.note(streamTime: 0, wallClock: 1_000)
        // Keyframes at 0, 0.667, 1.333 s; the last packet is at 1.933 s: more than 1 s after
        // 0.667, so the ring holds 1.333 s on.
        let held = try #require(ring.extract(from: 0, to: 10_000))
        #expect(held.packets.first?.time == all[20].time && held.packets.first?.isKeyframe == true)
        #expect(held.packets.count == 10 && held.start == 1_000 + all[20].time)
        #expect(ring.skippedPackets == 9)

        // Bytes: a budget smaller than one group of pictures keeps only the newest group.
        let small = ClipRecorder(camera: "c", maxSeconds: 100, maxBytes: all[20...].reduce(0) { $0 + $1.bytes })
        small.begin()
        small.attach(stream)
        all.forEach(small.add)
        small.note(streamTime: 0, wallClock: 0)
        #expect(small.bytes <= small.maxBytes)
        #expect(small.extract(from: 0, to: 100)?.packets.first?.time == all[20].time)
    }

    /// A stretch starts at the keyframe at or before its start and ends with the last packet
    /// (decode order) presented by its end; a loop's previous pass can still be taken after `begin`.
    @Test func extractCutsAtKeyframesAndKeepsThePreviousPass() throws {
        let (video, all) = try packets(of: CameraPipelineTests.phone)
        let stream = try #require(video.encodedStream)
        let ring = ClipRecorder(camera: "c", maxSeconds: 100, maxBytes: 1 << 30)
        ring.begin()
        ring.attach(stream)
        all.forEach(ring.add)
        ring.note(streamTime: 0, wallClock: 100)
        let middle = try #require(ring.extract(from: 100.9, to: 101.2))
        #expect(middle.packets.first?.time == all[10].time) // keyframe at 0.667 s
        // Every frame presented by 1.2 s is in it, and it ends with one of them (packets
        // presented later may come before it in decode order: references).
        let shown = all[10...].map(\.time).filter { $0 <= 1.2 + 1e-9 }
        #expect(Set(shown).isSubset(of: Set(middle.packets.map(\.time))))
        #expect(middle.packets.last!.time <= 1.2 + 1e-9 && abs(middle.end - (100 + shown.max()!)) < 1e-9)

        ring.begin() // the file loops: a new stream clock
        ring.attach(stream)
        all.prefix(5).forEach(ring.add)
        ring.note(streamTime: 0, wallClock: 102)
        #expect(ring.extract(from: 100.9, to: 101.2)?.packets.count == middle.packets.count)
        #expect(ring.extract(from: 102, to: 102.2)?.start == 102)
    }
}

@Suite(.serialized) struct ClipWriterTests {
    static let settings = DaemonConfiguration.Clips(preRollSeconds: 0.5, postRollSeconds: 0.3)

    /// A recorder holding the whole phone clip, its first frame captured at `wallClock`.
    static func filledRecorder(wallClock: Double) throws -> ClipRecorder {
        let (video, all) = try packets(of: CameraPipelineTests.phone)
        let ring = ClipRecorder(camera: "phone", maxSeconds: 100, maxBytes: 1 << 24)
        ring.begin()
        ring.attach(try #require(video.encodedStream))
        all.forEach(ring.add)
        ring.note(streamTime: video.originSeconds, wallClock: wallClock)
        ring.end()
        return ring
    }

    /// A full disk part-way through a clip: counted, logged with the file name, and no torn
    /// file or temporary file left; the next clip is written once there is room.
    @Test func fullDiskLeavesNoTornClip() throws {
        let root = temporaryDirectory("clips-fulldisk")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let disk = Disk()
        disk.room = 1_000
        var fs = SnapshotFileSystem.system
        fs.write = { fd, bytes, count in
            let room = disk.take(count)
            guard room > 0 else { errno = ENOSPC; return -1 }
            return Glibc.write(fd, bytes, room)
        }
        let lines = LogLines()
        let writer = ClipWriter(configuration: Self.settings, directory: root, fileSystem: fs, log: { lines.add($1) })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let now = Date().timeIntervalSince1970
        let ring = try Self.filledRecorder(wallClock: now)
        let clip = try #require(writer.submit(actionID: "phone-1", camera: "phone", start: now + 0.5, end: now + 1,
                                              recorder: ring))
        #expect(writer.waitIdle(timeout: 10))
        #expect(writer.totals.failed == 1 && writer.totals.written == 0)
        #expect(lines.lines.count == 1 && lines.lines[0].contains(clip.path) && lines.lines[0].contains("No space left"))
        #expect(SnapshotRetention.scan(root).isEmpty, "\(SnapshotRetention.scan(root))")

        disk.room = nil
        let next = try #require(writer.submit(actionID: "phone-2", camera: "phone", start: now + 0.5, end: now + 1,
                                              recorder: ring))
        #expect(writer.waitIdle(timeout: 10))
        #expect(writer.totals.written == 1)
        #expect(try VideoFile(path: next.path).codecName == "h264")
    }

    /// A stream whose codec cannot be copied: its clips fail, logged with the file and why.
    @Test func refusedStreamSaysWhy() throws {
        let root = temporaryDirectory("clips-refused")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let lines = LogLines()
        let writer = ClipWriter(configuration: Self.settings, directory: root, log: { lines.add($1) })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let ring = ClipRecorder(camera: "gate", maxSeconds: 10, maxBytes: 1 << 20)
        ring.begin()
        ring.refuse("the stream's video is mjpeg; clips are stream copies of H.264")
        ring.end()
        let now = Date().timeIntervalSince1970
        let clip = try #require(writer.submit(actionID: "gate-1", camera: "gate", start: now - 2, end: now - 1, recorder: ring))
        #expect(writer.waitIdle(timeout: 10))
        #expect(writer.totals.failed == 1)
        #expect(lines.lines == ["clip \(clip.path): the stream's video is mjpeg; clips are stream copies of H.264"])
    }

    /// Retention by days at start, then by bytes: the oldest clips go.
    @Test func retentionDeletesOldClips() throws {
        let root = temporaryDirectory("clips-retention")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let old = root + "/phone/2026-11-01/phone-0.mp4"
        try FileManager.default.createDirectory(atPath: root + "/phone/2026-11-01", withIntermediateDirectories: true)
        try Data(repeating: 1, count: 100).write(to: URL(fileURLWithPath: old))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3 * 86_400)], ofItemAtPath: old)
        var settings = Self.settings
        settings.retentionDays = 2
        settings.maxMB = 1e-9 // every written clip is over budget: only the newest ever stays... until it goes too
        let writer = ClipWriter(configuration: settings, directory: root, log: { _, _ in })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let now = Date().timeIntervalSince1970
        let ring = try Self.filledRecorder(wallClock: now)
        _ = writer.submit(actionID: "phone-1", camera: "phone", start: now + 0.5, end: now + 1, recorder: ring)
        #expect(writer.waitIdle(timeout: 10))
        #expect(!FileManager.default.fileExists(atPath: old))
        #expect(writer.totals.written == 1 && writer.totals.deleted == 2)
        #expect(SnapshotRetention.scan(root).isEmpty)
    }
}

/// Clips from a running pipeline: the phone clip (H.264, 2 s, keyframes every 0.667 s) as a
/// file camera in real time.
@Suite(.serialized) struct ClipPipelineTests {
    /// Each action's end names its clip; the MP4 then exists, decodes (H.264, the source's
    /// size and rotation), covers the action with its rolls as far as the file goes (starting
    /// at most one keyframe interval early), and its packets are the source's packets
    /// unchanged (stream copy: the same sizes and keyframes, in order).
    @Test func actionClipIsAStreamCopyWithTheRolls() throws {
        let engine = try CameraPipelineTests.engine.get()
        let root = temporaryDirectory("pipeline-clips")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let reported = WrittenClips()
        let writer = ClipWriter(configuration: ClipWriterTests.settings, directory: root, log: { _, _ in },
                                written: { reported.add($0) })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let recorder = writer.recorder(camera: "phone")
        let log = EventLog()
        let pipeline = try CameraPipeline(camera: CameraPipelineTests.camera(),
                                          source: FileFrameSource(path: CameraPipelineTests.phone, clips: recorder),
                                          engine: engine, epoch: "0123456789abcdef",
                                          clips: (writer, recorder), emit: { log.append($0) })
        pipeline.start()
        #expect(pipeline.wait(timeout: 60))
        #expect(writer.waitIdle(timeout: 10))

        let (source, sourcePackets) = try packets(of: CameraPipelineTests.phone)
        var starts: [String: Double] = [:]
        var ends: [DaemonEvent.Action] = []
        for event in log.events {
            switch event {
            case .actionStart(let a):
                starts[a.actionID] = a.windowStart
                #expect(a.clip == nil)
            case .actionUpdate(let a): #expect(a.clip == nil)
            case .actionEnd(let a): ends.append(a)
            default: break
            }
        }
        #expect(!ends.isEmpty)
        #expect(writer.totals == .init(written: ends.count, dropped: 0, failed: 0, deleted: 0))
        let interval = 2.0 / 3
        for end in ends {
            let clip = try #require(end.clip, "\(end.actionID): no clip")
            let start = try #require(starts[end.actionID])
            #expect(clip.path == root + "/phone/" + SnapshotPipelineTests.day(end.windowEnd) + "/\(end.actionID).mp4")
            #expect(abs(clip.startTime - (start - 0.5)) < 1e-6 && abs(clip.endTime - (end.windowEnd + 0.3)) < 1e-6)
            let written = try #require(reported.items.first { $0.actionID == end.actionID })

            // The rolls, as far as the file goes: it starts at the keyframe at or before the
            // start (so within one keyframe interval), or at the file's first packet.
            #expect(written.start >= clip.startTime - interval - 1e-6)
            // It ends at the post-roll's end, or where the file ended (the last packet).
            #expect(written.end >= min(clip.endTime, end.windowEnd) - 1.0 / 15 - 1e-6)
            #expect(written.end <= clip.endTime + 1e-6)

            let mp4 = try VideoFile(path: clip.path)
            #expect(mp4.codecName == "h264" && mp4.rotation == source.rotation)
            #expect(mp4.width == source.width && mp4.height == source.height)
            #expect(mp4.frameCount == written.packets)
            #expect(abs(mp4.duration - (written.end - written.start + 1.0 / 15)) < 0.1, "\(mp4.duration) vs \(written)")
            _ = try mp4.frames(at: Array(0..<mp4.frameCount))
            #expect(mp4.decodableFrameCount == nil || mp4.decodableFrameCount == mp4.frameCount)

            let (_, copied) = try packets(of: clip.path)
            let first = try #require(sourcePackets.firstIndex { $0.bytes == copied[0].bytes && $0.isKeyframe })
            let run = sourcePackets[first..<min(first + copied.count, sourcePackets.count)]
            #expect(run.map(\.bytes) == copied.map(\.bytes) && run.map(\.isKeyframe) == copied.map(\.isKeyframe))
            #expect(written.start <= clip.startTime + 1e-6 || first == 0, "\(written) vs \(clip)")
        }
    }
}

@Suite struct ClipConfigurationTests {
    static let vp8 = CameraPipelineTests.videos.appendingPathComponent("vp8.webm").path

    static func parse(_ section: String, cameras: String? = nil, stateDir: Bool = true) throws -> DaemonConfiguration {
        let scratch = try ConfigTests.Scratch()
        let yaml = """
            model: model.m2c
            socket: {path: run/events.sock}
            cameras: \(cameras ?? "[{id: a, source: {file: \"\(CameraPipelineTests.phone)\"}}]")
            \(stateDir ? "state_dir: run" : "")
            \(section)
            """
        return try DaemonConfiguration.parse(yaml: yaml, file: scratch.file, environment: [:])
    }

    @Test func sectionWithDefaultsAndValues() throws {
        #expect(try Self.parse("").clips == nil)
        #expect(try Self.parse("clips: {}").clips == .init())
        #expect(DaemonConfiguration.Clips().preRollSeconds == 5 && DaemonConfiguration.Clips().postRollSeconds == 5)
        let set = try #require(try Self.parse(
            "clips: {pre_roll_s: 2, post_roll_s: 0, max_s: 30, buffer_mb: 8, retention_days: 3, max_mb: 100, cameras: [a]}").clips)
        #expect(set == .init(enabled: true, cameras: ["a"], preRollSeconds: 2, postRollSeconds: 0, maxSeconds: 30,
                             bufferMB: 8, retentionDays: 3, maxMB: 100))
        #expect(set.covers("a") && !set.covers("b"))
        // Off, it needs no state directory and no H.264 camera.
        let mixed = "[{id: a, source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30}}]"
        #expect(try Self.parse("clips: {enabled: false}", cameras: mixed, stateDir: false).clips?.enabled == false)
        // Cameras that cannot have clips are left out by listing the ones that can; a network
        // stream's codec is checked once connected.
        let two = "[{id: a, source: {url: \"rtsp://cam/x\"}}, {id: b, source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30}}]"
        #expect(try Self.parse("clips: {cameras: [a]}", cameras: two).clips?.cameras == ["a"])
    }

    @Test(arguments: [
        ("clips: {pre_roll_s: -1}", nil, "clips.pre_roll_s", "must not be negative"),
        ("clips: {max_s: 0}", nil, "clips.max_s", "must be positive"),
        ("clips: {buffer_mb: 0}", nil, "clips.buffer_mb", "must be positive"),
        ("clips: {retention_days: 0}", nil, "clips.retention_days", "must be positive"),
        ("clips: {max_mb: -5}", nil, "clips.max_mb", "must be positive"),
        ("clips: {codec: mpeg4}", nil, "clips.codec", "unknown key"),
        ("clips: {cameras: [z]}", nil, "clips.cameras[0]", "no camera \"z\""),
        ("clips: {}", "[{id: a, source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30}}]", "cameras[0].source",
         "camera a cannot have clips: it is a V4L2 device"),
        ("clips: {cameras: [a]}", "[{id: a, source: {file: \"\(vp8)\"}}]", "clips.cameras[0]",
         "camera a cannot have clips: its video is vp8"),
    ] as [(String, String?, String, String)])
    func mistakesNameTheField(section: String, cameras: String?, field: String, message: String) {
        #expect {
            try Self.parse(section, cameras: cameras)
        } throws: { error in
            let e = error as? ConfigurationError
            return e?.field == field && e?.message.contains(message) == true
        }
    }

    @Test func enabledNeedsAStateDirectory() {
        #expect {
            try Self.parse("clips: {}", stateDir: false)
        } throws: { error in
            let e = error as? ConfigurationError
            return e?.field == "clips" && e?.message.contains("needs state_dir") == true
        }
    }
}
