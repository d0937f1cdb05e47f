import Foundation
import Testing
import Ops
import Video
@testable import Training

/// Sampling, augmentation, order and the background loader on tiny generated videos
/// (48×36 and 36×36, ≤ 20 frames): determinism from (seed, epoch, position), bounds of the
/// augmentation, equality with CLIPPreprocessor at test time, skipped files, balanced order.
@Suite struct ClipLoaderTests {
    /// A frame whose left third is bright and the rest dark, with a per-frame level in green:
    /// left–right asymmetric, and each frame distinguishable.
    static func asymmetric(_ frame: Int, _ x: Int, _ y: Int, width: Int) -> (UInt8, UInt8, UInt8) {
        (x < width / 3 ? 240 : 20, UInt8(10 * frame % 250), UInt8((x * 5 + y * 3) % 200))
    }

    /// `count` videos of 48×36 with 12 to 20 frames and labels i % 3.
    static func clips(in dir: DataScratch, count: Int) throws -> [ClipListEntry] {
        try (0..<count).map { i in
            let path = try dir.video("clip\(i).mp4", width: 48, height: 36, frames: 12 + (i * 3) % 9) { f, x, y in
                (UInt8((x * 4 + i * 30) % 256), UInt8((10 * f + y * 3) % 256), UInt8((i * 50 + x * y) % 256))
            }
            return ClipListEntry(path: path, label: i % 3, source: "test:\(i + 1)")
        }
    }

    static func drain(_ loader: ClipLoader) -> [ClipBatch] {
        var batches: [ClipBatch] = []
        while let batch = loader.next() { batches.append(batch) }
        return batches
    }

    static func same(_ a: [ClipBatch], _ b: [ClipBatch]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy {
            $0.pixels == $1.pixels && $0.labels == $1.labels && $0.paths == $1.paths && $0.endPosition == $1.endPosition
                && $0.positions == $1.positions
        }
    }

    @Test func sameSeedSameBatchesAndResumeMidEpoch() throws {
        let dir = try DataScratch()
        let entries = try Self.clips(in: dir, count: 8)
        func loader(workers: Int) throws -> ClipLoader {
            try ClipLoader(entries: entries, imageSize: 32, frames: 4, sampling: .dense(stride: 2),
                           mode: .train(.init(flip: true)), batchSize: 3, order: .shuffled, seed: 42,
                           workers: workers, queueDepth: 2)
        }
        let first = try loader(workers: 3), second = try loader(workers: 1)
        first.start(epoch: 1)
        second.start(epoch: 1)
        let a = Self.drain(first), b = Self.drain(second)
        #expect(a.map(\.count) == [3, 3, 2])
        #expect(a.map(\.endPosition) == [3, 6, 8])
        #expect(a[0].pixels.count == 3 * 1 * 4 * 3 * 32 * 32)
        #expect(Self.same(a, b), "3 workers and 1 worker, same seed: batches differ")
        #expect(Set(a.flatMap(\.paths)) == Set(entries.map(\.path)), "a shuffled epoch visits every clip once")

        // Resume after the first batch: the tail of the full epoch, bit for bit.
        first.start(epoch: 1, position: a[0].endPosition)
        #expect(Self.same(Self.drain(first), Array(a.dropFirst())))

        // Another epoch is another order and other augmentation.
        second.start(epoch: 2)
        let c = Self.drain(second)
        #expect(c.map(\.pixels) != a.map(\.pixels))
        #expect(first.stats.batches == 5 && first.stats.clipsLoaded == 13 && first.stats.clipsSkipped == 0)
    }

    /// Batches stay in order with many workers and a shallow queue; each batch's clips are the
    /// order's positions in sequence. The first clip is the slowest to decode (320×240), so
    /// later workers finish before it.
    @Test func orderedUnderSeveralWorkers() throws {
        let dir = try DataScratch()
        let slow = try dir.video("slow.mp4", width: 320, height: 240, frames: 20) { f, x, y in
            (UInt8((x + f) % 256), UInt8(y % 256), UInt8((x ^ y) % 256))
        }
        let entries = [ClipListEntry(path: slow, label: 2, source: "test:0")] + (try Self.clips(in: dir, count: 9))
        let loader = try ClipLoader(entries: entries, imageSize: 32, frames: 2, sampling: .segments,
                                    mode: .train(.init()), batchSize: 2, order: .sequential, seed: 3,
                                    workers: 4, queueDepth: 1)
        loader.start(epoch: 0)
        let batches = Self.drain(loader)
        #expect(batches.flatMap(\.paths) == entries.map(\.path))
        #expect(batches.flatMap(\.positions) == Array(0..<10))
        #expect(batches.flatMap(\.labels) == entries.map(\.label))
        let oneWorker = try ClipLoader(entries: entries, imageSize: 32, frames: 2, sampling: .segments,
                                       mode: .train(.init()), batchSize: 2, order: .sequential, seed: 3, workers: 1)
        oneWorker.start(epoch: 0)
        #expect(Self.same(Self.drain(oneWorker), batches), "4 workers and 1 worker give different batches")
        let stats = loader.stats
        print("[data] 10 clips, 4 workers: decode \(stats.decodeSeconds) s, consumer waited \(stats.waitSeconds) s")
        #expect(stats.decodeSeconds > 0)
    }

    /// Train-time draws stay within spec §6's bounds and match an independent crop of the
    /// resized frame; flip off never mirrors, flip on mirrors some clips.
    @Test func augmentationBoundsAndFlip() throws {
        let dir = try DataScratch()
        // Square, so CLIPPreprocessor(size: R) keeps the whole R × R resized frame: the oracle.
        let path = try dir.video("square.mp4", width: 36, height: 36, frames: 20) { f, x, y in
            Self.asymmetric(f, x, y, width: 36)
        }
        let video = try VideoFile(path: path)
        let sampler = ClipSampler(imageSize: 32, frames: 4, sampling: .dense(stride: 3))
        #expect(sampler.shortSideRange == 32...36)
        #expect(ClipSampler(imageSize: 224, frames: 8, sampling: .segments).shortSideRange == 224...258)
        let mean = CLIPPreprocessor.clipMean, std = CLIPPreprocessor.clipStd
        var flips = 0, sides = Set<Int>()
        for seed in 0..<24 {
            for flip in [false, true] {
                var generator = SplitMix64(seed: UInt64(seed))
                let (pixels, draw) = try sampler.trainingClip(video, flip: flip, using: &generator)
                #expect(pixels.count == 4 * 3 * 32 * 32)
                #expect(sampler.shortSideRange.contains(draw.shortSide))
                #expect(draw.cropX >= 0 && draw.cropX + 32 <= draw.shortSide && draw.cropY >= 0 && draw.cropY + 32 <= draw.shortSide)
                #expect(draw.indices.allSatisfy { (0..<20).contains($0) })
                #expect(zip(draw.indices, draw.indices.dropFirst()).allSatisfy { $1 - $0 == 3 })
                if !flip { #expect(!draw.flipped) }
                flips += draw.flipped ? 1 : 0
                sides.insert(draw.shortSide)

                // Red channel, left quarter against right quarter: bright side says the direction.
                let plane = 32 * 32
                var left: Float = 0, right: Float = 0
                for y in 0..<32 {
                    for x in 0..<8 { left += pixels[y * 32 + x] }
                    for x in 24..<32 { right += pixels[y * 32 + x] }
                }
                #expect(draw.flipped ? right > left : left > right, "seed \(seed) flip \(flip): left \(left) right \(right)")

                // Oracle: the frame resized to R × R by CLIPPreprocessor, cropped and mirrored by hand.
                let frame = try video.frames(at: [draw.indices[0]])[0]
                let resized = CLIPPreprocessor(size: draw.shortSide).resizedCrop(rgb: frame.rgb, width: 36, height: 36)
                var worst: Float = 0
                for c in 0..<3 {
                    for y in 0..<32 {
                        for x in 0..<32 {
                            let sx = draw.cropX + (draw.flipped ? 31 - x : x), sy = draw.cropY + y
                            let expected = (Float(resized[(sy * draw.shortSide + sx) * 3 + c]) / 255 - mean[c]) / std[c]
                            worst = max(worst, abs(pixels[c * plane + y * 32 + x] - expected))
                        }
                    }
                }
                #expect(worst < 1e-5, "seed \(seed): max |diff| \(worst) from resize + crop + flip by hand")
            }
        }
        #expect(flips > 4 && flips < 20, "\(flips) of 24 clips mirrored with flip on")
        #expect(sides.count >= 3, "short sides drawn: \(sides.sorted())")
    }

    /// One test view is CLIPPreprocessor's centre crop of the centre sample; 1 × 3 views are
    /// its three crops; 2 × 3 views are ordered temporal-major.
    @Test func evalViewsEqualCLIPPreprocessor() throws {
        let dir = try DataScratch()
        let path = try dir.video("wide.mp4", width: 48, height: 36, frames: 15) { f, x, y in
            Self.asymmetric(f, x, y, width: 48)
        }
        let entries = [ClipListEntry(path: path, label: 1, source: "test:1")]
        let video = try VideoFile(path: path)
        let preprocessor = CLIPPreprocessor(size: 32)
        for strategy in [SamplingStrategy.segments, .dense(stride: 2)] {
            let centre = FrameSampler.views(strategy, frameCount: video.frameCount, frames: 4, clips: 1)[0]
            let expected = preprocessor.tensor(try video.frames(at: centre.indices), crop: .center).array
            let single = try ClipLoader(entries: entries, imageSize: 32, frames: 4, sampling: strategy,
                                        mode: .eval(views: (1, 1)), batchSize: 1, order: .sequential)
            single.start(epoch: 0)
            let batch = try #require(single.next())
            #expect(batch.views == 1 && batch.labels == [1])
            #expect(batch.pixels == expected, "\(strategy): single eval view differs from tensor(frames, crop: .center)")

            let three = try ClipLoader(entries: entries, imageSize: 32, frames: 4, sampling: strategy,
                                       mode: .eval(views: (2, 3)), batchSize: 1, order: .sequential)
            three.start(epoch: 0)
            let views = try #require(three.next())
            #expect(views.views == 6 && views.pixels.count == 6 * 4 * 3 * 32 * 32)
            let samples = FrameSampler.views(strategy, frameCount: video.frameCount, frames: 4, clips: 2)
            var expectedViews: [Float] = []
            for sample in samples {
                for tensor in preprocessor.views(try video.frames(at: sample.indices), crops: CLIPPreprocessor.Crop.allCases) {
                    expectedViews += tensor.array
                }
            }
            #expect(views.pixels == expectedViews, "\(strategy): 2 × 3 views differ from CLIPPreprocessor's crops")
        }
    }

    /// Missing, empty, not-a-video and cut files are skipped, named and counted; their places
    /// go to the next clips, the same way every run; a 3-frame clip with T = 4 is kept.
    @Test func badFilesAreSkippedNamedAndCounted() throws {
        let dir = try DataScratch()
        var entries = try Self.clips(in: dir, count: 4)
        let empty = try dir.write("", to: "empty.mp4")
        let cut = dir.path("cut.mov")
        let mov = try Data(contentsOf: dataVideoFixtures.appendingPathComponent("h264.mov"))
        try mov.prefix(mov.count * 6 / 10).write(to: URL(fileURLWithPath: cut))
        let bad = [dir.path("gone.mp4"), empty, dataVideoFixtures.appendingPathComponent("not_a_video.mp4").path, cut]
        for (i, path) in bad.enumerated() {
            entries.insert(ClipListEntry(path: path, label: 2, source: "bad:\(i)"), at: 1 + 2 * i)
        }
        entries.append(ClipListEntry(path: dataVideoFixtures.appendingPathComponent("short_3frames.mp4").path,
                                     label: 0, source: "short"))
        let skips = SkipLog()
        let loader = try ClipLoader(entries: entries, imageSize: 32, frames: 4, sampling: .segments,
                                    mode: .train(.init()), batchSize: 2, order: .sequential, seed: 9, workers: 3,
                                    onSkip: { skips.add($0, $1) })
        loader.start(epoch: 0)
        let batches = Self.drain(loader)
        let logged = skips.entries
        for line in logged { print("[data] skipped \(line.path): \(line.reason)") }
        #expect(logged.map(\.path) == bad, "skipped in list order, each named")
        #expect(logged[0].reason.contains("no such file"))
        #expect(logged[2].reason.contains("not a video"))
        #expect(logged.allSatisfy { !$0.reason.isEmpty && !$0.reason.contains("\n") })
        #expect(batches.map(\.count) == [2, 2, 1])
        #expect(batches.flatMap(\.paths) == entries.map(\.path).filter { !bad.contains($0) })
        #expect(batches.map(\.endPosition) == [3, 7, 9])
        let stats = loader.stats
        #expect(stats.clipsSkipped == 4 && stats.clipsLoaded == 5 && stats.batches == 3)

        // Resuming at a batch boundary skips the same way.
        loader.start(epoch: 0, position: batches[0].endPosition)
        #expect(Self.same(Self.drain(loader), Array(batches.dropFirst())))

        // dropLast drops the final partial batch.
        let dropping = try ClipLoader(entries: entries, imageSize: 32, frames: 4, sampling: .segments,
                                      mode: .train(.init()), batchSize: 2, order: .sequential, seed: 9, dropLast: true)
        dropping.start(epoch: 0)
        #expect(Self.drain(dropping).map(\.count) == [2, 2])
    }

    @Test func balancedOrderDrawsClassesEvenly() throws {
        // 800 / 150 / 50 clips of three classes.
        let labels = [Int](repeating: 0, count: 800) + [Int](repeating: 1, count: 150) + [Int](repeating: 2, count: 50)
        let order = ClipOrder.balanced.indices(labels: labels, seed: 5, epoch: 0)
        #expect(order.count == labels.count)
        var counts = [0, 0, 0]
        for i in order { counts[labels[i]] += 1 }
        print("[data] balanced draws of 800/150/50: \(counts)")
        #expect(counts.allSatisfy { abs($0 - 333) < 60 }, "\(counts)")
        #expect(Set(order.filter { labels[$0] == 2 }).count > 40, "the small class's clips are all drawn from")
        #expect(order == ClipOrder.balanced.indices(labels: labels, seed: 5, epoch: 0))
        #expect(order != ClipOrder.balanced.indices(labels: labels, seed: 5, epoch: 1))

        let shuffled = ClipOrder.shuffled.indices(labels: labels, seed: 5, epoch: 3)
        #expect(shuffled.sorted() == Array(labels.indices) && shuffled != Array(labels.indices))
        #expect(ClipOrder.sequential.indices(labels: labels, seed: 5, epoch: 3) == Array(labels.indices))
    }

    @Test func refusesBadSettings() {
        let entry = ClipListEntry(path: "a.mp4", label: 0, source: "x:1")
        let message = thrownMessage {
            _ = try ClipLoader(entries: [entry], imageSize: 32, frames: 4, sampling: .segments,
                               mode: .train(.init()), batchSize: 0)
        }
        #expect(message?.contains("batch size 0") == true)
        #expect(thrownMessage {
            _ = try ClipLoader(entries: [], imageSize: 32, frames: 4, sampling: .segments, mode: .eval(views: (1, 1)), batchSize: 1)
        }?.contains("no clips") == true)
    }

    /// Stopping mid-epoch returns promptly and later `next()` gives nil; releasing a running
    /// loader ends its threads.
    @Test func stopMidEpoch() throws {
        let dir = try DataScratch()
        let entries = try Self.clips(in: dir, count: 6)
        let loader = try ClipLoader(entries: entries, imageSize: 32, frames: 2, sampling: .segments,
                                    mode: .train(.init()), batchSize: 1, order: .sequential, workers: 2, queueDepth: 1)
        loader.start(epoch: 0)
        #expect(loader.next() != nil)
        loader.stop()
        #expect(loader.next() == nil)
        var running: ClipLoader? = try ClipLoader(entries: entries, imageSize: 32, frames: 2, sampling: .segments,
                                                  mode: .train(.init()), batchSize: 1, queueDepth: 1)
        running!.start(epoch: 0)
        weak let released = running
        running = nil
        #expect(released == nil)
    }
}

/// onSkip calls, collected across threads.
final class SkipLog: @unchecked Sendable {
    private let lock = NSLock()
    private var log: [(path: String, reason: String)] = []

    func add(_ path: String, _ reason: String) { lock.withLock { log.append((path, reason)) } }
    var entries: [(path: String, reason: String)] { lock.withLock { log } }
}
