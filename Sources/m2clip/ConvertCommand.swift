import ArgumentParser
import Foundation
import M2Model

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Build an M²-CLIP model file (.m2c) from a CLIP checkpoint or the authors' weights.",
        discussion: """
        Sources: a Hugging Face CLIP directory (--hf DIR), OpenAI-named CLIP weights (--openai FILE), \
        or a safetensors state dict of the authors' M²-CLIP release (--authors FILE); or a base model file \
        with an adapters file (--base FILE --adapters FILE, see `m2clip export`). CLIP sources get \
        freshly initialised adapters, so the model starts equal to plain CLIP averaged over frames; \
        its VC head is untrained and classification defaults to zero-shot. Every model file also keeps \
        what training needs: the CMLM block (a copy of the last text block), its text adapters and the \
        MLM head over a word vocabulary (--mlm-words), taken from the authors' weights or created.
        """)

    @Option(name: .customLong("hf"), help: "A Hugging Face CLIP checkpoint directory.")
    var huggingFace: String?

    @Option(name: .customLong("openai"), help: "A safetensors file with OpenAI CLIP names.")
    var openAI: String?

    @Option(help: "A safetensors file with the authors' M²-CLIP release names.")
    var authors: String?

    @Option(help: "A model file (.m2c) to put --adapters on: its frozen weights must be those the adapters were exported with.")
    var base: String?

    @Option(help: "An adapters file (m2clip export --adapters) for --base; its labels and configuration are the output's.")
    var adapters: String?

    @Option(help: "Labels: a CSV with an id,name header, or one label per line (not with --base; for --authors, default: the labels an m2clip export carries).")
    var labels: String?

    @Option(help: "Adapter placement: k400 (before every FFN) or ssv2 (before attention and FFN). For --authors, the placement the file must have.")
    var preset: String?

    @Option(help: "TED-Adapter layers, comma-separated (CLIP sources; default: all).")
    var tedLayers: String?

    @Option(help: "TED-Adapter positions, comma-separated: preAttention, preMLP (CLIP sources).")
    var tedPositions: String?

    @Option(help: "A Hugging Face style config.json with the CLIP sizes of --openai / --authors weights (default: read off the tensor shapes, assuming 64-wide heads).")
    var clipConfig: String?

    @Option(help: "Frames per clip the model expects.")
    var frames = 8

    @Option(help: "Prompt template for the label text embeddings; {} is the label.")
    var template = "A video of {}"

    @Option(help: "The MLM head's word vocabulary: one word a line, or the release's \"word index\" lines (default: the distinct words of the label prompts, sorted). For --authors it must have as many words as the file's MLM decoder has rows.")
    var mlmWords: String?

    @Option(help: "Directory with vocab.json and merges.txt, when the checkpoint has none (default: the bundled CLIP vocabulary).")
    var tokenizer: String?

    @Option(help: "Output model file.")
    var out: String

    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard [huggingFace, openAI, authors, base].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --hf DIR, --openai FILE, --authors FILE, --base FILE")
        }
        guard (base == nil) == (adapters == nil) else {
            throw ValidationError("--base and --adapters go together")
        }
        if base != nil, labels != nil {
            throw ValidationError("--labels: with --base the labels are the adapters file's")
        }
        if labels == nil, huggingFace != nil || openAI != nil {
            throw ValidationError("missing --labels")
        }
        if let preset, M2CLIPConfiguration.Preset(rawValue: preset) == nil {
            throw ValidationError("--preset must be k400 or ssv2, got \(preset)")
        }
        if frames < 1 { throw ValidationError("--frames must be at least 1") }
        if !template.contains("{}") { throw ValidationError("--template must contain {} for the label") }
        _ = try parsedLayers()
        _ = try parsedPositions()
    }

    /// --labels, or the labels an m2clip export given to --authors carries.
    func resolvedLabels() throws -> [String] {
        if let labels { return try LabelSet.load(path: labels) }
        guard let authors, let carried = try ReleaseExport.carried(authors) else {
            throw ValidationError("missing --labels (\(authors ?? "the weights") carries none)")
        }
        return carried.labels
    }

    func parsedLayers() throws -> [Int]? {
        guard let tedLayers else { return nil }
        if tedLayers.isEmpty { return [] }
        return try tedLayers.split(separator: ",").map {
            guard let n = Int($0.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--ted-layers: \"\($0)\" is not a layer number")
            }
            return n
        }
    }

    func parsedPositions() throws -> [TEDConfiguration.Position]? {
        guard let tedPositions else { return nil }
        return try tedPositions.split(separator: ",").map {
            guard let p = TEDConfiguration.Position(rawValue: $0.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--ted-positions: \"\($0)\" is not preAttention or preMLP")
            }
            return p
        }
    }

    func run() throws {
        let context = try engine.makeContext()
        if let base, let adapters {
            let model = try AdapterFile.combine(base: base, adapters: adapters, output: out, context: context)
            print("wrote \(out): \(ModelSummary(model).oneLine)")
            return
        }
        let source: Conversion.Source
        if let huggingFace { source = .huggingFace(directory: huggingFace) }
        else if let openAI { source = .openAI(weights: openAI) }
        else { source = .authors(weights: authors!) }
        let options = Conversion.Options(
            labels: try resolvedLabels(), preset: preset.flatMap(M2CLIPConfiguration.Preset.init),
            tedLayers: try parsedLayers(), tedPositions: try parsedPositions(), frames: frames,
            promptTemplate: template, tokenizerDirectory: tokenizer,
            clip: try clipConfig.map { try CLIPConfiguration.load(path: $0) },
            mlmWords: try mlmWords.map { try MLMVocabulary.load(path: $0) })
        let model = try Conversion.convert(source, options: options, output: out, context: context)
        print("wrote \(out): \(ModelSummary(model).oneLine)")
        if let cmlm = model.configuration.cmlm {
            let adapters = cmlm.adapterPositions.isEmpty ? "no adapters" : "adapters \(cmlm.adapterPositions.map(\.rawValue).joined(separator: "+"))"
            print("training parts: CMLM block (text block \(model.configuration.clip.text.encoder.layers), \(adapters)), MLM head over \(cmlm.words.count) words")
        }
    }
}

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Print a model file's configuration, parameter counts and labels.")

    @Argument(help: "A model file (.m2c).")
    var model: String

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var engine: EngineOptions

    func run() throws {
        let context = try engine.makeContext()
        let summary = ModelSummary(try ModelFile.load(path: model, context: context))
        if json { try printJSON(summary) } else { print(summary.text) }
    }
}

struct LabelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "labels", abstract: "Change a model's label set.", subcommands: [Set.self])

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Replace the labels of a model file and recompute their text embeddings (no retraining).")

        @Argument(help: "A model file (.m2c), rewritten in place.")
        var model: String

        @Option(help: "Labels: a CSV with an id,name header, or one label per line.")
        var labels: String

        @Option(help: "Prompt template; {} is the label (default: the model's).")
        var template: String?

        @OptionGroup var engine: EngineOptions

        func run() throws {
            let context = try engine.makeContext()
            let m2clip = try ModelFile.load(path: model, context: context)
            try m2clip.setLabels(try LabelSet.load(path: labels), promptTemplate: template, context: context)
            try ModelFile.updateLabels(path: model, model: m2clip)
            let note = m2clip.configuration.classes > 0 && m2clip.configuration.classes != m2clip.labels.count
                ? " (the VC head keeps its \(m2clip.configuration.classes) classes: use --zero-shot with these labels)" : ""
            print("\(model): \(m2clip.labels.count) labels, template \"\(m2clip.configuration.promptTemplate)\"\(note)")
        }
    }
}
