import ArgumentParser
import Foundation
import M2Model
import Pipeline
import Video

struct ClassifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify",
        abstract: "Top labels of video files (any container and codec FFmpeg reads).",
        discussion: """
        Each file is sampled into N temporal clips of T frames (--views NxC: N clips × C spatial crops, \
        C = 1 or 3), scored per view (VC head, or zero-shot over the model's labels), and averaged. \
        A file that cannot be read is reported on stderr and the others are still classified; the \
        exit status is then 1.
        """)

    @Argument(help: "Video files.")
    var videos: [String]

    @Option(help: "An M²-CLIP model file (.m2c).")
    var model: String

    @Option(help: "How many labels to print per file.")
    var top = 5

    @Option(help: "Views: temporal clips x spatial crops, e.g. 1x1 or 3x3.")
    var views = "1x1"

    @Option(help: "Frames per clip (default: the model's).")
    var frames: Int?

    @Option(help: "Frame sampling: segments (one frame per equal segment) or dense:K (every K-th frame).")
    var sampling = "segments"

    @Flag(help: "Score against the model's labels by text similarity, not the VC head.")
    var zeroShot = false

    @Flag(help: "Print one JSON object per file (a JSON array).")
    var json = false

    @OptionGroup var engine: EngineOptions

    func parsedViews() throws -> (temporal: Int, spatial: Int) { try ClipOptions.views(views) }

    func parsedSampling() throws -> SamplingStrategy { try ClipOptions.sampling(sampling) }

    func validate() throws {
        _ = try parsedViews()
        _ = try parsedSampling()
        if top < 1 { throw ValidationError("--top must be at least 1") }
        if let frames, frames < 1 { throw ValidationError("--frames must be at least 1") }
    }

    func run() throws {
        let context = try engine.makeContext()
        let m2clip = try ModelFile.load(path: model, context: context)
        let (temporal, spatial) = try parsedViews()
        let classifier = try VideoClassifier(model: m2clip, options: .init(
            frames: frames ?? m2clip.configuration.frames, temporalViews: temporal, spatialCrops: spatial,
            sampling: try parsedSampling(), head: zeroShot ? .zeroShot : nil, top: top))
        var results: [VideoClassifier.Result] = []
        var failures = 0
        for video in videos {
            do {
                let result = try classifier.classify(path: video, context: context)
                results.append(result)
                if !json { printResult(result) }
            } catch {
                failures += 1
                printError("\(error)")
            }
        }
        if json { try printJSON(results) }
        if failures > 0 { throw ExitCode(1) }
    }

    func printResult(_ r: VideoClassifier.Result) {
        print("\(r.file)  [\(r.head.rawValue), \(r.views) view(s), \(r.framesUsed) frames, decode \(Int(r.decodeMs)) ms, model \(Int(r.modelMs)) ms]")
        for s in r.top { print(String(format: "  %6.2f%%  ", 100 * s.score) + s.label) }
        for note in r.notes { print("  note: \(note)") }
    }
}
