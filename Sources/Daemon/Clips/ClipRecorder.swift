import Foundation
import Video

/// One camera's ring of compressed video packets, for clips: references to the demuxer's
/// packets (no copy of the bytes, no decoding), bounded by `maxSeconds` of stream time and
/// `maxBytes`, always starting at a keyframe so any stretch taken from it decodes.
///
/// The source's thread feeds it: `begin` (then `attach`) when a pass over the input starts (a looping file
/// starts a new timeline: the previous one is kept, frozen, until the next `begin`, so a clip
/// that ended just before the loop point can still be written), `add` for each packet,
/// `note` for each delivered frame (which ties stream time to capture time: each packet gets
/// the capture time its presentation time has at the latest frame before it, or at the first
/// frame for packets read ahead of it), `end` when the source stops. The clip writer's thread
/// takes stretches out with `extract`.
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

    let camera: String
    let maxSeconds: Double
    let maxBytes: Int
    private let lock = NSLock()
    private var current: Segment?
    private var previous: Segment?
    private var ended = false
    /// Why the current pass cannot give clips (its codec), if so.
    private var refusal: String?
    /// Packets that came without a keyframe before them in the ring (dropped).
    private(set) var skippedPackets = 0

    init(camera: String, maxSeconds: Double, maxBytes: Int) {
        self.camera = camera
        self.maxSeconds = maxSeconds
        self.maxBytes = maxBytes
    }

    /// A new pass over the input, on a new stream clock.
    func begin() {
        lock.withLock {
            previous = current.flatMap { $0.walls.isEmpty || $0.stream == nil ? nil : $0 }
            current = Segment()
            ended = false
            refusal = nil
            trim()
        }
    }

    /// The codec parameters of the current pass's stream (known once its input is open, after
    /// its first packets may have come).
    func attach(_ stream: EncodedStreamParameters) {
        lock.withLock { current?.stream = stream }
    }

    /// A packet in decode order. One not after the last (re-read after a seek) is ignored, as
    /// is everything before the first keyframe.
    func add(_ packet: EncodedPacket) {
        lock.withLock {
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
            trim()
        }
    }

    /// The current pass cannot give clips (`reason`: its codec); its packets are not kept.
    func refuse(_ reason: String) {
        lock.withLock {
            refusal = reason
            current = nil
        }
    }

    /// Why the last pass could not give clips, if so.
    var refused: String? { lock.withLock { refusal } }

    /// A frame with presentation time `streamTime` (stream clock, seconds) was captured at
    /// `wallClock`.
    func note(streamTime: Double, wallClock: Double) {
        lock.withLock {
            guard var segment = current else { return }
            current = nil
            let offset = wallClock - streamTime
            segment.offset = offset
            for packet in segment.packets[segment.walls.count...] { segment.walls.append(packet.time + offset) }
            current = segment
        }
    }

    /// No more packets will come (the source ended or stopped): waiting clips are written
    /// with what there is.
    func end() {
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
