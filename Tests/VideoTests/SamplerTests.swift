import Testing
@testable import Video
import Ops

/// Clip sampling index arithmetic (spec §6: segment-based for SSv2, dense for K400, 3
/// temporal views at test time).
@Suite struct SamplerTests {
    @Test func segmentsTakeTheMiddleFrame() {
        #expect(FrameSampler.segments(frameCount: 80, frames: 8).indices == [5, 15, 25, 35, 45, 55, 65, 75])
        // 30 frames / 8 = 3.75 per segment: ⌊3.75 · (i + ½)⌋.
        #expect(FrameSampler.segments(frameCount: 30, frames: 8).indices == [1, 5, 9, 13, 16, 20, 24, 28])
        #expect(FrameSampler.segments(frameCount: 30, frames: 8).repeated == 0)
        #expect(FrameSampler.segments(frameCount: 1, frames: 1).indices == [0])
    }

    @Test func shortVideosRepeatFramesAndSaySo() {
        let three = FrameSampler.segments(frameCount: 3, frames: 8)
        #expect(three.indices == [0, 0, 0, 1, 1, 2, 2, 2] && three.repeated == 5)
        let one = FrameSampler.segments(frameCount: 1, frames: 8)
        #expect(one.indices == Array(repeating: 0, count: 8) && one.repeated == 7)
        var generator = SplitMix64(seed: 1)
        let random = FrameSampler.segments(frameCount: 3, frames: 8, using: &generator)
        #expect(random.indices.allSatisfy { (0..<3).contains($0) } && random.repeated == 5)
        #expect(random.indices == random.indices.sorted())
    }

    @Test func trainingSegmentsStayInTheirSegment() {
        var generator = SplitMix64(seed: 42)
        var seen = Set<Int>()
        for _ in 0..<200 {
            let sample = FrameSampler.segments(frameCount: 100, frames: 8, using: &generator)
            for (i, index) in sample.indices.enumerated() {
                #expect(index >= i * 100 / 8 && index < (i + 1) * 100 / 8, "segment \(i): \(index)")
            }
            seen.insert(sample.indices[0])
            #expect(sample.repeated == 0)
        }
        #expect(seen == Set(0..<12), "every frame of segment 0 is drawn: \(seen.sorted())")
        var a = SplitMix64(seed: 9), b = SplitMix64(seed: 9)
        #expect(FrameSampler.segments(frameCount: 57, frames: 8, using: &a)
                == FrameSampler.segments(frameCount: 57, frames: 8, using: &b))
    }

    @Test func denseSampling() {
        // span (8 − 1) · 4 + 1 = 29 in 100 frames: centred start ⌊71 / 2⌋ = 35.
        #expect(FrameSampler.dense(frameCount: 100, frames: 8, stride: 4).indices == [35, 39, 43, 47, 51, 55, 59, 63])
        #expect(FrameSampler.dense(frameCount: 100, frames: 8, stride: 4, start: 2).indices == [2, 6, 10, 14, 18, 22, 26, 30])
        // Shorter than the span: from 0, the last frame repeats.
        let short = FrameSampler.dense(frameCount: 20, frames: 8, stride: 4)
        #expect(short.indices == [0, 4, 8, 12, 16, 19, 19, 19] && short.repeated == 2)
        let late = FrameSampler.dense(frameCount: 100, frames: 4, stride: 16, start: 80)
        #expect(late.indices == [80, 96, 99, 99] && late.repeated == 1)
        var generator = SplitMix64(seed: 3)
        for _ in 0..<100 {
            let sample = FrameSampler.dense(frameCount: 300, frames: 8, stride: 16, using: &generator)
            #expect(sample.indices.first! >= 0 && sample.indices.last! <= 299 && sample.repeated == 0)
            #expect(zip(sample.indices, sample.indices.dropFirst()).allSatisfy { $1 - $0 == 16 })
        }
    }

    @Test func threeTemporalViews() {
        // 300 frames, span 8 · 16 − 15 = 113: starts spread over 0...187 in thirds of 62.67.
        let dense = FrameSampler.views(.dense(stride: 16), frameCount: 300, frames: 8, clips: 3)
        #expect(dense.map { $0.indices.first! } == [31, 94, 156])
        #expect(dense.allSatisfy { $0.indices.count == 8 && $0.repeated == 0 && $0.indices.last! < 300 })
        let tooShort = FrameSampler.views(.dense(stride: 16), frameCount: 50, frames: 8, clips: 3)
        #expect(tooShort.allSatisfy { $0.indices == tooShort[0].indices && $0.indices.first == 0 })
        #expect(tooShort[0].indices == [0, 16, 32, 48, 49, 49, 49, 49] && tooShort[0].repeated == 3)

        let segments = FrameSampler.views(.segments, frameCount: 240, frames: 8, clips: 3)
        // 30 frames a segment; views at 1/6, 1/2, 5/6 of each.
        #expect(segments.map { $0.indices.first! } == [5, 15, 25])
        #expect(segments[1] == FrameSampler.segments(frameCount: 240, frames: 8))
        #expect(FrameSampler.views(.segments, frameCount: 240, frames: 8, clips: 1)[0]
                == FrameSampler.segments(frameCount: 240, frames: 8))
    }
}
