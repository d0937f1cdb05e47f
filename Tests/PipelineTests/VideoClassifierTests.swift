import Foundation
import Testing
import M2Model
import Ops
import Video
@testable import Pipeline

/// Classification of real recordings (Tests/Fixtures/video, made by
/// scripts/fixtures/make_video_fixtures.py with the ffmpeg CLI) with a tiny untrained model
/// converted from a random CLIP: the answers are meaningless, the plumbing is what is tested.
@Suite(.serialized) struct VideoClassifierTests {
    static let videos = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/video")

    /// One model for the suite, written to a temporary directory.
    static let model: Result<M2CLIPModel, Error> = Result {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-pipeline-\(getpid()).m2c").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let context = try ComputeContext(threads: 2)
        try RandomCheckpoint.writeModelFile(preset: .tiny, seed: 3, labels: ["juggling", "surfing", "playing cello"],
                                            frames: 4, to: file, context: context)
        return try ModelFile.load(path: file, context: context)
    }

    func classifier(views: Int = 1, crops: Int = 1, head: VideoClassifier.Head? = nil) throws -> VideoClassifier {
        try VideoClassifier(model: try Self.model.get(),
                            options: .init(frames: 4, temporalViews: views, spatialCrops: crops, head: head, top: 3))
    }

    @Test(arguments: ["phone_h264_rot90.mp4", "mpeg4_part2.avi", "h264.mov", "vp8.webm", "mjpeg.avi",
                      "odd_321x179.webm", "vfr.mkv"])
    func classifiesEveryContainer(file: String) throws {
        let result = try classifier(views: 3, crops: 3).classify(path: Self.videos.appendingPathComponent(file).path,
                                                                context: try ComputeContext(threads: 2))
        #expect(result.views == 9)
        #expect(result.top.count == 3)
        #expect(result.head == .zeroShot) // the converted model's VC head is untrained
        let total = result.top.map(\.score).reduce(0, +)
        #expect(total > 0.999 && total < 1.001, "3 labels' probabilities sum to \(total)")
        #expect(result.top.map(\.score) == result.top.map(\.score).sorted(by: >))
        #expect(result.repeatedFrames == 0, "\(file): \(result.notes)")
    }

    @Test func shortClipRepeatsFramesAndSaysSo() throws {
        let result = try classifier().classify(path: Self.videos.appendingPathComponent("short_3frames.mp4").path,
                                               context: try ComputeContext(threads: 1))
        #expect(result.framesUsed == 3)
        #expect(result.repeatedFrames == 1)
        #expect(result.notes.contains { $0.contains("repeat") })
    }

    @Test func badFilesFailWithTheirName() throws {
        let c = try classifier()
        let context = try ComputeContext(threads: 1)
        for name in ["not_a_video.mp4", "does-not-exist.mp4"] {
            let path = Self.videos.appendingPathComponent(name).path
            do {
                _ = try c.classify(path: path, context: context)
                Issue.record("\(name) was classified")
            } catch {
                #expect("\(error)".contains(name), "\(error)")
                #expect(!"\(error)".contains("\n"))
            }
        }
    }

    @Test func vcHeadCanBeChosenWhenItMatchesTheLabels() throws {
        let model = try Self.model.get()
        #expect(model.configuration.classes == model.labels.count)
        #expect(throws: Never.self) { _ = try classifier(head: .vc) }
    }
}
