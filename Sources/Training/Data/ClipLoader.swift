import Foundation
import Ops
import Video

/// B clips ready for a training or evaluation step.
public struct ClipBatch: Sendable {
    /// (B, V, T, 3, S, S), CLIP-normalised; V = 1 in training.
    public var pixels: [Float]
    /// (B): class indices.
    public var labels: [Int]
    /// (B): the video files, in batch order.
    public var paths: [String]
    /// (B): each clip's position in the epoch's order.
    public var positions: [Int]
    public var epoch: Int
    /// The position in the epoch's order after the last entry this batch consumed (skipped
    /// files included): `start(epoch:position:)` with it resumes with the next batch.
    public var endPosition: Int
    /// V, T and S of `pixels`.
    public var views: Int, frames: Int, imageSize: Int

    /// B.
    public var count: Int { labels.count }
}

/// What a loader has done since it was made.
public struct ClipLoaderStats: Sendable, Equatable {
    /// Clips delivered in batches.
    public var clipsLoaded = 0
    /// Files skipped (missing, unreadable, not a video, nothing decodable).
    public var clipsSkipped = 0
    public var batches = 0
    /// Decoding and preprocessing, summed over workers (exceeds wall time with several).
    public var decodeSeconds = 0.0
    /// Time the consumer spent blocked in `next()`: the model waiting for data.
    public var waitSeconds = 0.0

    public init() {}
}

/// Decodes and preprocesses clips on background threads, ahead of the model, and hands them
/// out as batches in the epoch's order.
///
///     let loader = try ClipLoader(entries: try ClipList.read("train.txt", labels: labels),
///                                 imageSize: 224, frames: 8, sampling: .dense(stride: 16),
///                                 mode: .train(.init(flip: true)), batchSize: 32, seed: 1)
///     loader.start(epoch: 0)
///     while let batch = loader.next() { ... batch.pixels (32, 1, 8, 3, 224, 224) ... }
///
/// Determinism: the epoch's order is a pure function of (seed, epoch) (`ClipOrder`), and
/// every random choice of the clip at position p a pure function of (seed, epoch, p)
/// (`ClipOrder.clipSeed`), never of which worker ran first; batches come out in order. A
/// file that cannot be used is reported through `onSkip(path, reason)` and the batch takes
/// the next clips of the order instead, so the batches are still the same from run to run.
///
/// Buffering: at most `queueDepth` finished batches wait, and workers decode at most
/// batchSize + workers clips past the last one batched. `stop()` (also on deinit) ends the
/// threads once their current clip is done. `next()` is for one consumer; `onSkip` runs on
/// the loader's assembling thread, in order, and must not call `stop()` or `start`.
public final class ClipLoader: @unchecked Sendable {
    /// Train-time augmentation (spec §6): short-side jitter and random crop always; the
    /// horizontal flip unless off (SSv2, where direction is the label).
    public struct Augmentation: Sendable, Equatable {
        public var flip: Bool
        public init(flip: Bool = true) { self.flip = flip }
    }

    public enum Mode: Sendable {
        /// One random view per clip (V = 1).
        case train(Augmentation)
        /// Deterministic test views: temporal clips × spatial crops (V = their product).
        case eval(views: (temporal: Int, spatial: Int))
    }

    public typealias Order = ClipOrder

    public let entries: [ClipListEntry]
    public let sampler: ClipSampler
    public let mode: Mode
    public let batchSize: Int
    public let order: Order
    public let seed: UInt64
    public let workers: Int
    public let queueDepth: Int
    public let dropLast: Bool
    /// V: 1 in training, temporal × spatial in evaluation.
    public let views: Int

    /// What the threads need, without a reference back to the loader (so deinit can stop them).
    private let plan: LoadPlan
    /// Guards `run`.
    private let lock = NSLock()
    /// Serialises `start` and `stop`, so that one epoch runs at a time.
    private let control = NSLock()
    private var run: EpochRun?

    /// Throws `TrainingError` for an empty list or a size, count or view number below 1.
    public init(entries: [ClipListEntry], imageSize: Int, frames: Int, sampling: SamplingStrategy, mode: Mode,
                batchSize: Int, order: Order = .shuffled, seed: UInt64 = 0, workers: Int = 2, queueDepth: Int = 2,
                dropLast: Bool = false, onSkip: @escaping @Sendable (_ path: String, _ reason: String) -> Void = { _, _ in }) throws {
        guard !entries.isEmpty else { throw TrainingError("clip loader: no clips to load") }
        for (name, value) in [("image size", imageSize), ("frames", frames), ("batch size", batchSize),
                              ("workers", workers), ("queue depth", queueDepth)] where value < 1 {
            throw TrainingError("clip loader: \(name) \(value), need at least 1")
        }
        if case .dense(let stride) = sampling, stride < 1 {
            throw TrainingError("clip loader: dense sampling stride \(stride), need at least 1")
        }
        switch mode {
        case .train:
            views = 1
        case .eval(let v):
            guard v.temporal >= 1, v.spatial >= 1 else {
                throw TrainingError("clip loader: \(v.temporal) temporal × \(v.spatial) spatial views, need at least 1 × 1")
            }
            views = v.temporal * v.spatial
        }
        self.entries = entries
        sampler = ClipSampler(imageSize: imageSize, frames: frames, sampling: sampling)
        self.mode = mode
        self.batchSize = batchSize
        self.order = order
        self.seed = seed
        self.workers = workers
        self.queueDepth = queueDepth
        self.dropLast = dropLast
        plan = LoadPlan(entries: entries, sampler: sampler, mode: mode, batchSize: batchSize, seed: seed,
                        workers: workers, queueDepth: queueDepth, dropLast: dropLast, views: views,
                        onSkip: onSkip, counters: Counters())
    }

    deinit { stop() }

    /// Indices into `entries` that epoch `epoch` visits, in order.
    public func order(epoch: Int) -> [Int] {
        order.indices(labels: entries.map(\.label), seed: seed, epoch: epoch)
    }

    /// Begins epoch `epoch` at `position` of its order (0...order count; a checkpoint's
    /// `endPosition` resumes mid-epoch), ending any epoch still running.
    public func start(epoch: Int, position: Int = 0) {
        control.withLock {
            endRun()
            let visit = order(epoch: epoch)
            precondition((0...visit.count).contains(position),
                         "clip loader: position \(position) is outside epoch \(epoch)'s \(visit.count) clips")
            let run = EpochRun(plan: plan, epoch: epoch, order: visit, position: position)
            lock.withLock { self.run = run }
            run.launch()
        }
    }

    /// The next batch of the epoch, waiting until it is ready; nil at the end of the epoch
    /// (or before `start`, or after `stop`).
    public func next() -> ClipBatch? {
        guard let run = lock.withLock({ self.run }) else { return nil }
        let began = ContinuousClock.now
        let batch = run.take()
        plan.counters.add { $0.waitSeconds += seconds(since: began) }
        return batch
    }

    /// Ends the running epoch: workers finish the clip in hand and exit; returns once they have.
    public func stop() {
        control.withLock { endRun() }
    }

    private func endRun() {
        let run = lock.withLock { () -> EpochRun? in
            defer { self.run = nil }
            return self.run
        }
        run?.cancel()
    }

    public var stats: ClipLoaderStats { plan.counters.value }
}

/// The loader's settings and counters, shared by its epochs' threads.
private struct LoadPlan: Sendable {
    let entries: [ClipListEntry]
    let sampler: ClipSampler
    let mode: ClipLoader.Mode
    let batchSize: Int
    let seed: UInt64
    let workers: Int
    let queueDepth: Int
    let dropLast: Bool
    let views: Int
    let onSkip: @Sendable (String, String) -> Void
    let counters: Counters

    enum ClipResult {
        /// (V, T, 3, S, S).
        case clip([Float])
        case skipped(String)
    }

    /// The clip at `position` of epoch `epoch`: entirely determined by its arguments.
    func load(_ entry: ClipListEntry, epoch: Int, position: Int) -> ClipResult {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: entry.path, isDirectory: &isDirectory) else {
            return .skipped("no such file")
        }
        guard !isDirectory.boolValue else { return .skipped("a directory, not a video file") }
        do {
            let video = try VideoFile(path: entry.path)
            switch mode {
            case .train(let augmentation):
                var generator = SplitMix64(seed: ClipOrder.clipSeed(seed: seed, epoch: epoch, position: position))
                return .clip(try sampler.trainingClip(video, flip: augmentation.flip, using: &generator).pixels)
            case .eval(let views):
                return .clip(try sampler.evaluationClip(video, views: views))
            }
        } catch let error as VideoError {
            // The callback gets the path separately: keep only what went wrong.
            let line = error.description, prefix = "video \(error.path): "
            return .skipped(line.hasPrefix(prefix) ? String(line.dropFirst(prefix.count)) : line)
        } catch {
            return .skipped("\(error)")
        }
    }

    func skipped(_ path: String, _ reason: String) {
        counters.add { $0.clipsSkipped += 1 }
        onSkip(path, reason)
    }

    func delivered(_ batch: ClipBatch) {
        counters.add {
            $0.batches += 1
            $0.clipsLoaded += batch.count
        }
    }

    func decoded(in seconds: Double) {
        counters.add { $0.decodeSeconds += seconds }
    }
}

/// One epoch's threads and queues. Workers claim positions in order and decode them in any
/// order into `results`; the assembler takes results strictly by position into batches.
private final class EpochRun: @unchecked Sendable {
    // Immutable after init.
    private let plan: LoadPlan
    private let epoch: Int
    private let order: [Int]
    /// Positions a worker may claim beyond `cursor`.
    private let window: Int

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var nextClaim: Int
    private var cursor: Int
    private var results: [Int: LoadPlan.ClipResult] = [:]
    private var ready: [ClipBatch] = []
    private var finished = false
    private var cancelled = false
    private var live = 0

    init(plan: LoadPlan, epoch: Int, order: [Int], position: Int) {
        self.plan = plan
        self.epoch = epoch
        self.order = order
        window = plan.batchSize + plan.workers
        nextClaim = position
        cursor = position
    }

    func launch() {
        let workers = plan.workers
        condition.withLock { live = workers + 1 }
        for _ in 0..<workers {
            Thread { [self] in work() }.start()
        }
        Thread { [self] in assemble() }.start()
    }

    /// Sets the cancel flag and waits for every thread to leave.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        while live > 0 { condition.wait() }
        condition.unlock()
    }

    /// The next ready batch, waiting for it; nil once the epoch is over or cancelled.
    func take() -> ClipBatch? {
        condition.lock()
        defer { condition.unlock() }
        while ready.isEmpty && !finished && !cancelled { condition.wait() }
        guard !ready.isEmpty else { return nil }
        condition.broadcast() // the assembler may wait for room
        return ready.removeFirst()
    }

    private func work() {
        condition.lock()
        while !cancelled && nextClaim < order.count {
            guard nextClaim < cursor + window else {
                condition.wait()
                continue
            }
            let position = nextClaim
            nextClaim += 1
            condition.unlock()
            let began = ContinuousClock.now
            let result = plan.load(plan.entries[order[position]], epoch: epoch, position: position)
            plan.decoded(in: seconds(since: began))
            condition.lock()
            results[position] = result
            condition.broadcast()
        }
        live -= 1
        condition.broadcast()
        condition.unlock()
    }

    private func assemble() {
        let base = plan
        let clipFloats = base.views * base.sampler.viewCount
        var pixels: [Float] = [] // (B, V, T, 3, S, S), filled clip by clip
        var labels: [Int] = [], paths: [String] = [], positions: [Int] = [] // (B)
        func batch(end: Int) -> ClipBatch {
            defer {
                pixels = []
                labels = []
                paths = []
                positions = []
            }
            return ClipBatch(pixels: pixels, labels: labels, paths: paths, positions: positions, epoch: epoch,
                             endPosition: end, views: base.views, frames: base.sampler.frames,
                             imageSize: base.sampler.imageSize)
        }
        condition.lock()
        defer {
            live -= 1
            condition.broadcast()
            condition.unlock()
        }
        while !cancelled {
            if ready.count >= base.queueDepth {
                condition.wait()
                continue
            }
            if cursor == order.count {
                if !labels.isEmpty && !(base.dropLast && labels.count < base.batchSize) {
                    let last = batch(end: cursor)
                    base.delivered(last)
                    ready.append(last)
                }
                finished = true
                condition.broadcast()
                return
            }
            guard let result = results.removeValue(forKey: cursor) else {
                condition.wait()
                continue
            }
            let entry = base.entries[order[cursor]]
            positions.append(cursor)
            cursor += 1
            condition.broadcast() // the window moved
            condition.unlock()
            switch result {
            case .clip(let clip):
                if pixels.isEmpty { pixels.reserveCapacity(base.batchSize * clipFloats) }
                pixels += clip
                labels.append(entry.label)
                paths.append(entry.path)
            case .skipped(let reason):
                positions.removeLast()
                base.skipped(entry.path, reason)
            }
            condition.lock()
            if labels.count == base.batchSize {
                let full = batch(end: cursor)
                base.delivered(full)
                ready.append(full)
                condition.broadcast()
            }
        }
    }
}

/// Statistics behind a lock, updated from every thread.
private final class Counters: @unchecked Sendable {
    private let lock = NSLock()
    private var stats = ClipLoaderStats()

    var value: ClipLoaderStats { lock.withLock { stats } }

    func add(_ change: (inout ClipLoaderStats) -> Void) {
        lock.withLock { change(&stats) }
    }
}

private func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
}
