import Foundation
import Logging
import Video

/// One camera's ring of compressed video packets, for clips, bounded by `maxSeconds` of
/// stream time and `maxBytes`, always starting at a keyframe so any stretch taken from it
/// decodes. The packets are either the source's own (references to the demuxer's H.264
/// packets: no copy of the bytes, no decoding) or, for a source without H.264 packets (a V4L2
/// camera, another codec), H.264 encoded from its frames at `encodeFPS` (`ClipEncoder`).
///
/// The source's thread feeds it: `begin` (then `attach`) when a pass over the input starts,
/// or `beginEncoding` for a camera (a looping file or a reconnected stream starts a new
/// timeline: the previous one is kept, frozen, until the next pass, so a clip that ended just
/// before the loop point can still be written); `add` for each packet; `deliver` for each
/// frame (which ties stream time to capture time: each copied packet gets the capture time
/// its presentation time has at the latest frame before it, or at the first frame for packets
/// read ahead of it; an encoded one, its frame's capture time); `end` when the source stops.
/// The clip writer's thread takes stretches out with `extract`.
public final class ClipRecorder: @unchecked Sendable {
    /// A run of packets on one stream clock.
    struct Segment {
        /// nil until `attach`.
        var stream: EncodedStreamParameters?
        var packets: [EncodedPacket] = []
        /// Capture times of `packets`, a prefix of them (those read before the first frame wait
        /// for it).
        var walls: [Double] = []
        /// Capture time − stream time at the latest frame.
        var offset: Double?
        var lastOrder: Int64?
        var bytes = 0
    }

    /// What `extract` hands the writer.
    struct Stretch {
        var stream: EncodedStreamParameters
        var packets: [EncodedPacket]
        /// Capture times (seconds since 1970): the first packet's, and the latest presentation
        /// time at or before the stretch's end.
        var start: Double
        var end: Double
    }

    /// Where the current pass's packets come from.
    enum Mode: Equatable {
        /// Not known yet (a pass whose input is not open): packets are kept in case they are H.264.
        case undecided
        /// The source's own H.264 packets.
        case copy
        /// Encoded from the source's frames.
        case encode
    }

    /// The codec whose packets are copied; others are encoded.
    static let copiedCodec = "h264"

    let camera: String
    let maxSeconds: Double
    let maxBytes: Int
    let encodeFPS: Double
    /// Frames that may wait for the encoder before more are dropped.
    let encodeQueue: Int
    private let log: @Sendable (Logger.Level, String) -> Void
    private let lock = NSLock()
    private var current: Segment?
    private var previous: Segment?
    private var ended = false
    private var mode = Mode.undecided
    /// Counts passes, so an encoder's late packets never land in a later pass.
    private var generation = 0
    /// Why the current pass cannot give clips, if so.
    private var refusal: String?
    /// Packets that came without a keyframe before them in the ring (dropped).
    private(set) var skippedPackets = 0
    /// Made at the first pass that encodes.
    private var encoder: ClipEncoder?

    init(camera: String, maxSeconds: Double, maxBytes: Int, encodeFPS: Double = 15, encodeQueue: Int = 8,
         log: @escaping @Sendable (Logger.Level, String) -> Void = { _, _ in }) {
        self.encodeQueue = encodeQueue
        self.camera = camera
        self.maxSeconds = maxSeconds
        self.maxBytes = maxBytes
        self.encodeFPS = encodeFPS
        self.log = log
    }

    /// A new pass over the input, on a new stream clock; `attach` says where its packets come from.
    func begin() {
        lock.withLock { beginPass(.undecided) }
    }

    /// A new pass of a source without packets (a V4L2 camera): its frames are encoded.
    func beginEncoding() {
        lock.withLock { beginPass(.encode) }
    }

    private func beginPass(_ next: Mode) {
        previous = current.flatMap { $0.walls.isEmpty || $0.stream == nil ? nil : $0 }
        current = Segment()
        ended = false
        refusal = nil
        mode = next
        generation += 1
        trim()
    }

    /// The current pass's stream (known once its input is open, after its first packets may
    /// have come): H.264 is copied; another codec, or nil (no stream to copy), is encoded from
    /// the frames, and the packets kept so far are dropped.
    func attach(_ stream: EncodedStreamParameters?) {
        lock.withLock {
            if let stream, stream.codecName == Self.copiedCodec {
                current?.stream = stream
                mode = .copy
            } else {
                if current != nil { current = Segment() }
                mode = .encode
            }
        }
    }

    /// Where the current pass's packets come from.
    var currentMode: Mode { lock.withLock { mode } }

    /// A packet of the source in decode order (ignored when the pass encodes). One not after
    /// the last (re-read after a seek) is ignored, as is everything before the first keyframe.
    func add(_ packet: EncodedPacket) {
        lock.withLock {
            guard mode != .encode else { return }
            append(packet)
            trim()
        }
    }

    /// Called under `lock`.
    private func append(_ packet: EncodedPacket) {
        guard var segment = current else { return }
        if let last = segment.lastOrder, packet.order <= last { return }
        current = nil // so the arrays below are not copied on write
        segment.lastOrder = packet.order
        if segment.packets.isEmpty && !packet.isKeyframe {
            skippedPackets += 1
        } else {
            segment.packets.append(packet)
            if let offset = segment.offset { segment.walls.append(packet.time + offset) }
            segment.bytes += packet.bytes
        }
        current = segment
    }

    /// A frame was delivered, captured at `wallClock`: `streamTime` is its presentation time
    /// on the stream clock (seconds; nil for a camera), `image` its pixels, asked for only
    /// when the frame is encoded, during this call.
    func deliver(wallClock: Double, streamTime: Double?, image: () -> RGBFrame?) {
        let pass: (encoder: ClipEncoder, generation: Int)? = lock.withLock {
            guard mode == .encode else {
                if let streamTime { note(streamTime: streamTime, wallClock: wallClock) }
                return nil
            }
            guard refusal == nil else { return nil }
            let made = encoder ?? ClipEncoder(camera: camera, fps: encodeFPS, capacity: encodeQueue, recorder: self, log: log)
            encoder = made
            return (made, generation)
        }
        if let pass { pass.encoder.offer(wallClock: wallClock, generation: pass.generation, image: image) }
    }

    /// Called under `lock`.
    private func note(streamTime: Double, wallClock: Double) {
        guard var segment = current else { return }
        current = nil
        let offset = wallClock - streamTime
        segment.offset = offset
        for packet in segment.packets[segment.walls.count...] { segment.walls.append(packet.time + offset) }
        current = segment
    }

    /// The encoder opened for pass `generation` (again, for frames of a new size: a new
    /// segment) with stream time 0 at capture time `origin`.
    func encoderStarted(_ stream: EncodedStreamParameters, origin: Double, generation: Int) {
        lock.withLock {
            guard generation == self.generation, mode == .encode else { return }
            if current?.stream != nil {
                previous = current.flatMap { $0.walls.isEmpty ? nil : $0 }
                current = Segment()
            }
            current?.stream = stream
            current?.offset = origin
        }
    }

    /// Packets the encoder made for pass `generation` (dropped when a later pass began).
    func addEncoded(_ packets: [EncodedPacket], generation: Int) {
        guard !packets.isEmpty else { return }
        lock.withLock {
            guard generation == self.generation, mode == .encode else { return }
            packets.forEach(append)
            trim()
        }
    }

    /// Pass `generation` cannot give clips (`reason`: its encoder did not open); its frames are
    /// not encoded.
    func refuse(_ reason: String, generation: Int) {
        lock.withLock {
            guard generation == self.generation else { return }
            refusal = reason
            current = nil
        }
    }

    /// Why the last pass could not give clips, if so.
    var refused: String? { lock.withLock { refusal } }

    /// Frames left out of clips because the encoder fell behind.
    var droppedFrames: Int { lock.withLock { encoder }?.droppedFrames ?? 0 }

    /// No more packets will come (the source ended or stopped): the encoder's queue is
    /// encoded, then waiting clips are written with what there is.
    func end() {
        lock.withLock { encoder }?.finish()
        lock.withLock { ended = true }
    }

    /// The capture time of the newest packet, and whether the source has ended.
    var progress: (newest: Double?, ended: Bool) {
        lock.withLock {
            let newest = current?.walls.max()
            return (newest, ended)
        }
    }

    /// Bytes held, both segments.
    var bytes: Int { lock.withLock { (current?.bytes ?? 0) + (previous?.bytes ?? 0) } }

    /// The packets from the keyframe at or before capture time `from` (or the oldest held) to
    /// the last packet (in decode order) presented at or before `to`, from the segment that overlaps [from, to]
    /// most; nil when none does.
    func extract(from: Double, to: Double) -> Stretch? {
        lock.withLock {
            var best: (overlap: Double, stretch: Stretch)?
            for segment in [current, previous].compactMap({ $0 }) {
                guard let stream = segment.stream, !segment.walls.isEmpty else { continue }
                let walls = segment.walls
                let packets = segment.packets.prefix(walls.count)
                let start = packets.indices.last { packets[$0].isKeyframe && walls[$0] <= from } ?? 0
                guard let last = walls.lastIndex(where: { $0 <= to }), last >= start else { continue }
                let taken = Array(packets[start...last])
                let first = walls[start]
                // Packets presented later than `to` may be in it: references, in decode order,
                // of frames presented before.
                let end = walls[start...last].filter { $0 <= to }.max()!
                let overlap = min(end, to) - max(first, from)
                if overlap > best?.overlap ?? -.infinity {
                    best = (overlap, Stretch(stream: stream, packets: taken, start: first, end: end))
                }
            }
            return best?.stretch
        }
    }

    /// Drops whole groups of pictures from the front while the ring is longer than
    /// `maxSeconds` or larger than `maxBytes` (the previous segment first, then the current).
    /// Called under `lock`.
    private func trim() {
        while var old = previous, (current?.bytes ?? 0) + old.bytes > maxBytes {
            previous = nil
            if !dropGroup(&old) { break }
            previous = old.packets.isEmpty ? nil : old
        }
        guard var segment = current else { return }
        current = nil
        while let newest = segment.packets.last, let oldest = segment.packets.first,
              newest.time - oldest.time > maxSeconds || segment.bytes + (previous?.bytes ?? 0) > maxBytes {
            if previous != nil, segment.bytes + previous!.bytes > maxBytes {
                previous = nil
                continue
            }
            if !dropGroup(&segment) {
                // One group larger than the whole budget: start again at the next keyframe.
                guard segment.bytes > maxBytes else { break }
                segment.packets.removeAll()
                segment.walls.removeAll()
                segment.bytes = 0
            }
        }
        current = segment
    }

    /// Removes the packets before the segment's second keyframe; false when it has only one.
    private func dropGroup(_ segment: inout Segment) -> Bool {
        guard let next = segment.packets.dropFirst().firstIndex(where: \.isKeyframe) else { return false }
        segment.bytes -= segment.packets[..<next].reduce(0) { $0 + $1.bytes }
        segment.packets.removeFirst(next)
        segment.walls.removeFirst(min(next, segment.walls.count))
        return true
    }
}
