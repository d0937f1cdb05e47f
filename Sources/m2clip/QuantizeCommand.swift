import ArgumentParser
import Foundation
import M2Model
import Quantization

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write an int8 (or fp16- or bf16-stored) model file and report what it costs in accuracy against the fp32 one.",
        discussion: """
        The image tower's qkv, out_proj and MLP weights become int8 (symmetric, one scale per output \
        channel); activations are quantized per token at run time. LayerNorm, softmax, GELU, the \
        adapters, the heads and the text tower stay fp32. The report compares both models on the \
        --calibrate videos (or on generated clips): per-block output cosine, video embedding cosine, \
        VC and zero-shot top-1 agreement. --to fp16 stores the same weights in fp16: half the file and \
        half their memory; the GEMMs widen them to fp32 a cache block at a time (fp32 accumulate). \
        --to bf16 does the same with bf16 (rounded to nearest even): fp32's exponent range, so no \
        overflow or underflow, but 8 significant bits against fp16's 11, so a larger error. \
        The training-only CMLM block and MLM head are dropped (inference never reads them) unless \
        --keep-training-parts; train from the fp32 file.
        """)

    @Argument(help: "An fp32 model file (.m2c).")
    var input: String

    @Option(help: "Target precision: int8, fp16 or bf16 (fp16 / bf16 weights, fp32 arithmetic).")
    var to: String

    @Option(help: "Output model file.")
    var out: String

    @Option(parsing: .upToNextOption, help: "Video files to compare the models on (default: generated clips).")
    var calibrate: [String] = []

    @Option(help: "Generated clips to compare on when no --calibrate videos are given.")
    var clips = 8

    @Option(help: "Image-tower blocks to keep in fp32, comma-separated (outlier channels).")
    var fp32Layers: String?

    @Flag(help: "Keep the training-only CMLM block and MLM head (fp32) instead of dropping them.")
    var keepTrainingParts = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    @OptionGroup var engine: EngineOptions

    func layers() throws -> [Int] {
        guard let fp32Layers, !fp32Layers.isEmpty else { return [] }
        return try fp32Layers.split(separator: ",").map {
            guard let n = Int($0.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--fp32-layers: \"\($0)\" is not a block number")
            }
            return n
        }
    }

    func validate() throws {
        guard Quantizer.Target(rawValue: to) != nil else {
            throw ValidationError("--to must be int8, fp16 or bf16 (got \(to))")
        }
        guard clips >= 1 else { throw ValidationError("--clips must be at least 1") }
        _ = try layers()
        if input == out { throw ValidationError("--out must differ from the input file") }
    }

    func run() throws {
        let context = try engine.makeContext()
        let sizes = try Quantizer(target: Quantizer.Target(rawValue: to)!, fp32Layers: try layers(),
                                  keepTrainingParts: keepTrainingParts)
            .quantize(input: input, output: out)
        let reference = try ModelFile.load(path: input, context: context)
        let quantized = try ModelFile.load(path: out, context: context)
        let inputs = try AccuracyReport.inputs(videos: calibrate, frames: reference.configuration.frames,
                                               imageSize: reference.vision.configuration.imageSize, count: clips)
        let report = AccuracyReport.compare(reference: reference, quantized: quantized, inputs: inputs,
                                            sizes: sizes, context: context)
        if json {
            try printJSON(report)
            return
        }
        print("wrote \(out): \(sizes.output / 1_048_576) MB (fp32 \(sizes.input / 1_048_576) MB, \(String(format: "%.2f", Double(sizes.output) / Double(max(sizes.input, 1))))×)")
        if let cmlm = reference.configuration.cmlm, !keepTrainingParts {
            print("dropped the training-only CMLM block and MLM head (\(cmlm.words.count) words)")
        }
        print("compared on \(inputs.count) \(calibrate.isEmpty ? "generated clips" : "videos") of \(reference.configuration.frames) frames")
        print("block output cosine: " + report.layerCosine.enumerated().map { String(format: "%d:%.5f", $0.offset, $0.element) }.joined(separator: " "))
        print(String(format: "video embedding cosine: min %.5f, mean %.5f", report.videoEmbeddingCosineMin, report.videoEmbeddingCosineMean))
        if let vc = report.vcTop1Agreement {
            var line = String(format: "VC top-1 agreement: %.1f%%", 100 * vc)
            let total = report.clips.count, decisive = report.vcDecisiveClips ?? 0
            if decisive < total {
                line += decisive == 0
                    ? "; every clip is a near tie (fp32 top-1 leads by less than twice the largest logit change: an untrained or undecided head)"
                    : String(format: "; %.1f%% over the %d of %d clips that are not near ties",
                             100 * (report.vcTop1AgreementDecisive ?? 0), decisive, total)
            }
            print(line)
        }
        print(String(format: "zero-shot top-1 agreement: %.1f%%", 100 * report.zeroShotTop1Agreement))
    }
}
