import ArgumentParser
import Foundation
import M2Model
import Ops

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Embeddings (projected, not normalised) from a CLIP checkpoint or an M²-CLIP model file.",
        discussion: """
        With a Hugging Face CLIP directory: image_embeds (one per frame) and text_embeds. With an         M²-CLIP model file (.m2c), the frames of --pixels are one clip: frame_embeds (T × P, after the         temporal adapter), video_embed, vc_logits and label_scores (zero-shot over the model's labels).
        """)

    @Option(help: "A Hugging Face CLIP checkpoint directory, or an M²-CLIP model file (.m2c).")
    var model: String

    @Option(help: "A safetensors file with pixel_values f32 (N, 3, H, W), already normalised.")
    var pixels: String?

    @Option(parsing: .upToNextOption, help: "Texts to embed, one embedding each.")
    var text: [String] = []

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        if pixels == nil && text.isEmpty { throw ValidationError("give --pixels FILE and/or --text STRING") }
    }

    struct Output: Encodable {
        var imageEmbeds: [[Float]]?
        var textEmbeds: [[Float]]?
        var textTokens: [[Int32]]?
        var logitScale: Float

        enum CodingKeys: String, CodingKey {
            case imageEmbeds = "image_embeds", textEmbeds = "text_embeds"
            case textTokens = "text_tokens", logitScale = "logit_scale"
        }
    }

    struct VideoOutput: Encodable {
        var frameEmbeds: [[Float]]?
        var videoEmbed: [Float]?
        var vcLogits: [Float]?
        var labelScores: [Float]?
        var labels: [String]
        var textEmbeds: [[Float]]?
        var textTokens: [[Int32]]?
        var logitScale: Float

        enum CodingKeys: String, CodingKey {
            case frameEmbeds = "frame_embeds", videoEmbed = "video_embed", vcLogits = "vc_logits"
            case labelScores = "label_scores", labels, textEmbeds = "text_embeds"
            case textTokens = "text_tokens", logitScale = "logit_scale"
        }
    }

    func run() throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), !isDirectory.boolValue {
            try runModelFile()
        } else {
            try runCLIP()
        }
    }

    func runModelFile() throws {
        let context = try engine.makeContext()
        let m2clip = try ModelFile.load(path: model, context: context)
        var output = VideoOutput(labels: m2clip.labels, logitScale: exp(m2clip.logitScale))
        if let pixels {
            let frames = try PixelFile.load(path: pixels, for: m2clip.vision.configuration)
            let clip = m2clip(pixels: frames.data, clips: 1, frames: frames.shape[0], context: context)[0]
            output.frameEmbeds = clip.frameEmbeddings
            output.videoEmbed = clip.videoEmbedding
            output.vcLogits = clip.vcLogits
            output.labelScores = clip.labelScores
        }
        if !text.isEmpty {
            let ids = text.map { m2clip.tokenizer.encode($0, contextLength: m2clip.text.configuration.maxPositions) }
            output.textTokens = ids
            output.textEmbeds = try ids.map { try m2clip.text(ids: $0, context: context) }
        }
        if json {
            try printJSON(output)
            return
        }
        if let video = output.videoEmbed {
            print("video_embed (\(video.count)): " + video.prefix(6).map { String(format: "%.5f", $0) }.joined(separator: " ") + " …")
            let top = (output.labelScores ?? []).enumerated().sorted { $0.element > $1.element }.prefix(5)
            for (index, score) in top { print(String(format: "  %.4f  %@", score, m2clip.labels[index])) }
        }
        for (i, row) in (output.textEmbeds ?? []).enumerated() {
            print("text[\(i)] (\(row.count)): " + row.prefix(6).map { String(format: "%.5f", $0) }.joined(separator: " ") + " …")
        }
    }

    func runCLIP() throws {
        let context = try engine.makeContext()
        let towers: CLIPModel.Towers = pixels == nil ? .text : text.isEmpty ? .vision : .both
        let clip = try CLIPModel(directory: model, towers: towers, context: context)
        var output = Output(logitScale: exp(clip.logitScale))
        if let pixels, let vision = clip.vision {
            let frames = try PixelFile.load(path: pixels, for: vision.configuration)
            let embeds = vision(pixels: frames.data, frames: frames.shape[0], context: context)
            output.imageEmbeds = (0..<frames.shape[0]).map { embeds.row($0) }
        }
        if !text.isEmpty, let tower = clip.text {
            let tokenizer = try CLIPTokenizer.forCheckpoint(directory: model)
            let ids = text.map { tokenizer.encode($0, contextLength: tower.configuration.maxPositions) }
            output.textTokens = ids
            output.textEmbeds = try ids.map { try tower(ids: $0, context: context) }
        }
        if json {
            try printJSON(output)
        } else {
            func show(_ label: String, _ rows: [[Float]]) {
                for (i, row) in rows.enumerated() {
                    let head = row.prefix(6).map { String(format: "%.5f", $0) }.joined(separator: " ")
                    print("\(label)[\(i)] (\(row.count)): \(head)\(row.count > 6 ? " …" : "")")
                }
            }
            show("image", output.imageEmbeds ?? [])
            show("text", output.textEmbeds ?? [])
            print("logit_scale: \(output.logitScale)")
        }
    }
}
