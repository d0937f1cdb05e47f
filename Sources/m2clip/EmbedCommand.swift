import ArgumentParser
import Foundation
import M2Model
import Ops

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Image and text embeddings (projected, not normalised) of a CLIP checkpoint.")

    @Option(help: "A Hugging Face CLIP checkpoint directory (config.json, model.safetensors).")
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

    func run() throws {
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
