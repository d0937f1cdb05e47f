import Foundation
import Logging
import Video

/// Encodes a camera's frames into its `ClipRecorder` when the source has no H.264 packets to
/// copy (a V4L2 camera, a file or stream in another codec): H.264 at `fps` (`VideoEncoder`), on
/// a thread of its own so capture never waits for the encoder.
///
/// The source's thread offers frames (`offer`); one is taken when its capture time reaches
/// the next slot of a 1 / `fps` grid (slots start again after a gap), converted there (it may be a V4L2
/// buffer valid only during the call) and queued. A full queue (`capacity` frames: the encoder
/// fell behind) drops the frame and counts it; the clip then has a longer gap there. Each
/// encoder run belongs to one recorder generation (a pass of the source): frames of an older
/// one are discarded. A frame of another size than the encoder's starts a new encoder and a
/// new segment in the recorder (a camera reopened at another size).
final class ClipEncoder: @unchecked Sendable {
    struct Item {
        var image: RGBFrame
        var wallClock: Double
        var generation: Int
    }

    let camera: String
    let fps: Double
    let capacity: Int
    private unowned let recorder: ClipRecorder
    private let log: @Sendable (Logger.Level, String) -> Void

    private let lock = NSCondition()
    private var queue: [Item] = []
    /// The pass frames were last taken from, and the capture time the next one is due.
    private var due: (generation: Int, wallClock: Double)?
    private var running = false
    private var finishing = false
    private var dropped = 0
    private var failures = 0

    /// The open encoder, the pass it encodes, the capture time of its stream time 0 and the
    /// frame size it was opened for. On the encoder's thread only.
    private var current: (encoder: VideoEncoder, generation: Int, origin: Double, width: Int, height: Int)?

    init(camera: String, fps: Double, capacity: Int = 8, recorder: ClipRecorder,
         log: @escaping @Sendable (Logger.Level, String) -> Void) {
        precondition(fps > 0 && capacity > 0, "ClipEncoder fps \(fps), capacity \(capacity)")
        self.camera = camera
        self.fps = fps
        self.capacity = capacity
        self.recorder = recorder
        self.log = log
    }

    /// Frames dropped because the encoder fell behind.
    var droppedFrames: Int { lock.withLock { dropped } }

    /// A captured frame of pass `generation`; `image` is asked only if the frame is taken.
    func offer(wallClock: Double, generation: Int, image: () -> RGBFrame?) {
        let wanted = lock.withLock { () -> Bool in
            guard !finishing else { return false }
            // A tenth of a slot early still counts: capture times jitter.
            if let due, due.generation == generation, wallClock < due.wallClock - 0.1 / fps { return false }
            return true
        }
        guard wanted, let frame = image() else { return }
        lock.withLock {
            let slot = due.map { $0.generation == generation ? $0.wallClock : wallClock } ?? wallClock
            due = (generation, max(slot + 1 / fps, wallClock + 0.5 / fps))
            guard queue.count < capacity else {
                dropped += 1
                if dropped == 1 || dropped % 300 == 0 {
                    log(.warning, "camera \(camera): clip encoder behind, \(dropped) frame(s) left out of clips so far")
                }
                return
            }
            queue.append(Item(image: frame, wallClock: wallClock, generation: generation))
            if !running {
                running = true
                let thread = Thread { [self] in run() }
                thread.name = "m2clipd.clip-encode"
                thread.start()
            }
            lock.broadcast()
        }
    }

    /// Encodes what is queued, then stops the thread (waits for it). Frames offered later
    /// start it again.
    func finish() {
        lock.withLock {
            finishing = true
            lock.broadcast()
            while running { lock.wait() }
            finishing = false
        }
    }

    private func run() {
        while true {
            let item: Item? = lock.withLock {
                while queue.isEmpty && !finishing { lock.wait() }
                return queue.isEmpty ? nil : queue.removeFirst()
            }
            guard let item else { break }
            encode(item)
        }
        flush()
        lock.withLock {
            running = false
            lock.broadcast()
        }
    }

    private func encode(_ item: Item) {
        let frame = item.image
        if let run = current, run.generation != item.generation || run.width != frame.width || run.height != frame.height {
            flush()
        }
        do {
            let run = try current ?? {
                let opened = try VideoEncoder(width: frame.width, height: frame.height, fps: fps)
                recorder.encoderStarted(opened.stream, origin: item.wallClock, generation: item.generation)
                return (opened, item.generation, item.wallClock, frame.width, frame.height)
            }()
            current = run
            let milliseconds = Int64(((item.wallClock - run.origin) * 1000).rounded())
            recorder.addEncoded(try run.encoder.encode(frame, milliseconds: milliseconds), generation: run.generation)
        } catch {
            failures += 1
            if failures == 1 || failures % 300 == 0 {
                log(.error, "camera \(camera): clip encoding: \(error) (\(failures) frame(s) so far)")
            }
            if current == nil { recorder.refuse("\(error)", generation: item.generation) }
        }
    }

    /// Ends the current encoder run; its last packets go to the recorder.
    private func flush() {
        guard let run = current else { return }
        if let packets = try? run.encoder.flush() { recorder.addEncoded(packets, generation: run.generation) }
        current = nil
    }
}
