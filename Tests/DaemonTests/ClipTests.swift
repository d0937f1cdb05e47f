import Foundation
import Testing
import Video
import SafeTensors
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
        ring.deliver(wallClock: 1_000, streamTime: 0) { nil }
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
        small.deliver(wallClock: 0, streamTime: 0) { nil }
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
        ring.deliver(wallClock: 100, streamTime: 0) { nil }
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
        ring.deliver(wallClock: 102, streamTime: 0) { nil }
        #expect(ring.extract(from: 100.9, to: 101.2)?.packets.count == middle.packets.count)
        #expect(ring.extract(from: 102, to: 102.2)?.start == 102)
    }
}

@Suite struct ClipEncodingTests {
    static let vp8 = CameraPipelineTests.videos.appendingPathComponent("vp8.webm").path // 320x240, 15 fps, 2 s

    /// A pass without H.264 packets (here a VP8 file, decoded): its frames, offered at 30 fps of
    /// capture time, are encoded at 15 fps, stamped with their capture times; the ring's stretch
    /// muxes into an H.264 MP4 whose frames are those offered (each closer to its own source
    /// frame than to its neighbours).
    @Test func framesAreEncodedAtTheClipRate() throws {
        let frames = try VideoFile(path: Self.vp8).frames(at: Array(0..<30))
        // A queue for every frame: offered in a burst, none waits for the encoder.
        let ring = ClipRecorder(camera: "c", maxSeconds: 100, maxBytes: 1 << 24, encodeFPS: 15, encodeQueue: 64)
        ring.begin()
        ring.attach(try VideoFile(path: Self.vp8).encodedStream) // vp8: encoded
        #expect(ring.currentMode == .encode)
        var asked = 0
        for (i, frame) in frames.enumerated() {
            // Each file frame twice, 1/30 s apart: every other one is taken.
            for half in 0..<2 {
                ring.deliver(wallClock: 500 + Double(2 * i + half) / 30, streamTime: nil) {
                    asked += 1
                    return frame
                }
            }
        }
        ring.end()
        #expect(asked == 30 && ring.droppedFrames == 0)
        let stretch = try #require(ring.extract(from: 0, to: 1_000))
        #expect(stretch.stream.codecName == "h264" && stretch.packets.count == 30)
        #expect(abs(stretch.start - 500) < 1e-9 && abs(stretch.end - (500 + 58.0 / 30)) < 1e-3)

        let mp4 = try MP4Muxer.mux(stretch.stream, packets: stretch.packets, limit: 8 << 20)
        let path = temporaryDirectory("clips-encoded") + "/clip.mp4"
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        try Data(mp4).write(to: URL(fileURLWithPath: path))
        let decoded = try VideoFile(path: path)
        #expect(decoded.codecName == "h264" && decoded.width == 320 && decoded.height == 240 && decoded.frameCount == 30)
        for i in stride(from: 0, to: 30, by: 3) {
            let frame = try decoded.frames(at: [i])[0]
            let own = frame.psnr(against: frames[i])
            #expect(own > 25, "frame \(i): \(own) dB")
            for j in [i - 2, i + 2] where frames.indices.contains(j) {
                #expect(frame.psnr(against: frames[j]) < own, "frame \(i) is closer to source frame \(j)")
            }
        }
    }

    /// A new pass drops what the encoder still makes for the old one; frames of a new size
    /// start a new segment; an H.264 pass after an encoded one copies again.
    @Test func passesAndSizes() throws {
        let frames = try VideoFile(path: Self.vp8).frames(at: Array(0..<4))
        let ring = ClipRecorder(camera: "c", maxSeconds: 100, maxBytes: 1 << 24, encodeFPS: 10, encodeQueue: 64)
        ring.beginEncoding()
        for (i, frame) in frames.enumerated() { ring.deliver(wallClock: 10 + Double(i) / 10, streamTime: nil) { frame } }
        let small = RGBFrame(width: 160, height: 120, rgb: [UInt8](repeating: 90, count: 160 * 120 * 3), index: 0,
                             timestamp: 0, sourceIndex: 0, clamped: false)
        for i in 0..<3 { ring.deliver(wallClock: 11 + Double(i) / 10, streamTime: nil) { small } }
        ring.end()
        let big = try #require(ring.extract(from: 10, to: 10.35))
        #expect(big.packets.count == 4 && big.start == 10)
        let later = try #require(ring.extract(from: 11, to: 12))
        #expect(later.packets.count == 3 && later.start == 11)
        let path = temporaryDirectory("clips-sizes") + "/small.mp4"
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        try Data(try MP4Muxer.mux(later.stream, packets: later.packets, limit: 1 << 20)).write(to: URL(fileURLWithPath: path))
        #expect(try VideoFile(path: path).width == 160)

        let (video, all) = try packets(of: CameraPipelineTests.phone)
        ring.begin()
        ring.attach(video.encodedStream)
        #expect(ring.currentMode == .copy)
        all.forEach(ring.add)
        ring.deliver(wallClock: 20, streamTime: 0) { nil }
        #expect(ring.extract(from: 20, to: 30)?.packets.count == 30)
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
        ring.deliver(wallClock: wallClock, streamTime: video.originSeconds) { nil }
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
        var calls = FileCalls.live
        calls.write = { fd, bytes in
            let room = disk.take(bytes.count)
            guard room > 0 else { return .failure(Errno(code: ENOSPC)) }
            return FileCalls.live.write(fd, UnsafeRawBufferPointer(rebasing: bytes[..<room]))
        }
        let lines = LogLines()
        let writer = ClipWriter(configuration: Self.settings, directory: root, calls: calls, log: { lines.add($1) })
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

    /// Frames the encoder cannot take (too small for it to open): the clip fails, logged with
    /// the file and why.
    @Test func encoderFailureSaysWhy() throws {
        let root = temporaryDirectory("clips-refused")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let lines = LogLines()
        let writer = ClipWriter(configuration: Self.settings, directory: root, log: { lines.add($1) })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let ring = writer.recorder(camera: "gate")
        ring.beginEncoding()
        let now = Date().timeIntervalSince1970
        let dot = RGBFrame(width: 1, height: 1, rgb: [0, 0, 0], index: 0, timestamp: 0, sourceIndex: 0, clamped: false)
        ring.deliver(wallClock: now - 2, streamTime: nil) { dot }
        ring.end()
        let clip = try #require(writer.submit(actionID: "gate-1", camera: "gate", start: now - 2, end: now - 1, recorder: ring))
        #expect(writer.waitIdle(timeout: 10))
        #expect(writer.totals.failed == 1)
        #expect(lines.lines.contains("clip \(clip.path): video encoder: frames of 1x1 are too small"), "\(lines.lines)")
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
    /// The file at `path` as a real-time camera with clips under `root`, run to its end and
    /// the clip writer idle; the writer is stopped.
    fileprivate static func run(_ path: String, settings: DaemonConfiguration.Clips, root: String) throws
        -> (log: EventLog, reported: WrittenClips, writer: ClipWriter, recorder: ClipRecorder) {
        let engine = try CameraPipelineTests.engine.get()
        let reported = WrittenClips()
        let writer = ClipWriter(configuration: settings, directory: root, log: { _, _ in }, written: { reported.add($0) })
        writer.start()
        defer { writer.stop(timeout: 5) }
        let recorder = writer.recorder(camera: "file")
        let log = EventLog()
        let pipeline = try CameraPipeline(camera: CameraPipelineTests.camera(), source: FileFrameSource(path: path, clips: recorder),
                                          engine: engine, epoch: "0123456789abcdef",
                                          clips: (writer, recorder), emit: { log.append($0) })
        pipeline.start()
        #expect(pipeline.wait(timeout: 60))
        #expect(writer.waitIdle(timeout: 10))
        return (log, reported, writer, recorder)
    }

    /// Each action's end names its clip; the MP4 then exists, decodes (H.264, the source's
    /// size and rotation), covers the action with its rolls as far as the file goes (starting
    /// at most one keyframe interval early), and its packets are the source's packets
    /// unchanged (stream copy: the same sizes and keyframes, in order).
    @Test func actionClipIsAStreamCopyWithTheRolls() throws {
        let root = temporaryDirectory("pipeline-clips")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (log, reported, writer, _) = try Self.run(CameraPipelineTests.phone, settings: ClipWriterTests.settings, root: root)

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

extension ClipPipelineTests {
    /// A VP8 file camera in real time: each action's end names its clip, which is H.264
    /// encoded from the frames at `encode_fps` (320×240 like the source), covering the action
    /// with its rolls as far as the file goes, and each of its frames close to a frame of the file.
    @Test func vp8CameraClipIsEncoded() throws {
        let root = temporaryDirectory("pipeline-clips-vp8")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var settings = ClipWriterTests.settings
        settings.encodeFPS = 10
        let (log, reported, writer, recorder) = try Self.run(ClipEncodingTests.vp8, settings: settings, root: root)
        #expect(recorder.currentMode == .encode)

        let source = try VideoFile(path: ClipEncodingTests.vp8).frames(at: Array(0..<30))
        let ends = log.events.compactMap { event -> DaemonEvent.Action? in
            if case .actionEnd(let a) = event { return a } else { return nil }
        }
        #expect(!ends.isEmpty)
        #expect(writer.totals == .init(written: ends.count, dropped: 0, failed: 0, deleted: 0))
        for end in ends {
            let clip = try #require(end.clip, "\(end.actionID): no clip")
            let written = try #require(reported.items.first { $0.actionID == end.actionID })
            // Encoded frames every 0.1 s; keyframes every 2 s: the clip starts at most 2 s early.
            #expect(written.start >= clip.startTime - 2 - 1e-6 && written.end <= clip.endTime + 1e-6)
            #expect(written.end >= min(clip.endTime, end.windowEnd) - 0.2)
            let mp4 = try VideoFile(path: clip.path)
            #expect(mp4.codecName == "h264" && mp4.width == 320 && mp4.height == 240)
            #expect(mp4.frameCount == written.packets && abs(mp4.fps - 10) < 1.5, "\(mp4.frameCount) frames at \(mp4.fps) fps")
            for frame in try mp4.frames(at: [0, mp4.frameCount - 1]) {
                let best = source.map { frame.psnr(against: $0) }.max()!
                #expect(best > 25, "\(clip.path) frame \(frame.index): best \(best) dB against the file's frames")
            }
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
        #expect(try Self.parse("clips: {encode_fps: 10}").clips?.encodeFPS == 10 && set.encodeFPS == 15)
        #expect(set.covers("a") && !set.covers("b"))
        // Off, it needs no state directory.
        let v4l2 = "[{id: a, source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30}}]"
        #expect(try Self.parse("clips: {enabled: false}", cameras: v4l2, stateDir: false).clips?.enabled == false)
        // Every kind of source can have clips (copied or encoded).
        let three = "[{id: a, source: {url: \"rtsp://cam/x\"}}, {id: b, source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30}}, "
            + "{id: c, source: {file: \"\(Self.vp8)\"}}]"
        #expect(try Self.parse("clips: {}", cameras: three).clips?.covers("b") == true)
    }

    @Test(arguments: [
        ("clips: {pre_roll_s: -1}", nil, "clips.pre_roll_s", "must not be negative"),
        ("clips: {max_s: 0}", nil, "clips.max_s", "must be positive"),
        ("clips: {buffer_mb: 0}", nil, "clips.buffer_mb", "must be positive"),
        ("clips: {retention_days: 0}", nil, "clips.retention_days", "must be positive"),
        ("clips: {max_mb: -5}", nil, "clips.max_mb", "must be positive"),
        ("clips: {codec: mpeg4}", nil, "clips.codec", "unknown key"),
        ("clips: {cameras: [z]}", nil, "clips.cameras[0]", "no camera \"z\""),
        ("clips: {encode_fps: 0}", nil, "clips.encode_fps", "must be from 1 to 60"),
        ("clips: {encode_fps: 120}", nil, "clips.encode_fps", "must be from 1 to 60"),
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
