import Foundation
import Ops

/// M²-CLIP for inference (spec §2–5): the image tower with TED-Adapters, the post-projection
/// temporal adapter, the VC head, and the text tower with its adapters for class text
/// embeddings, which are cached per label set.
public final class M2CLIPModel: @unchecked Sendable {
    public private(set) var configuration: M2CLIPConfiguration
    public let vision: VisionTower
    package let postAdapter: PostAdapter?
    package let classifier: Linear?  // VC head (C ← d) on ln_post(mean_T CLS)
    public let text: TextTower
    /// `logit_scale` as stored (a log).
    public let logitScale: Float
    public let tokenizer: CLIPTokenizer
    /// The tokenizer's files, kept to write them into model files.
    let tokenizerFiles: TokenizerFileContents
    public private(set) var labels: [String]
    /// Parameters loaded, in all and in the trainable parts (adapters and heads).
    public let parameterCounts: (total: Int, adapters: Int)
    /// Text embeddings of the label prompts, (C, P), projected and not normalised.
    public private(set) var labelEmbeddings: Tensor

    /// The output for one clip.
    public struct ClipOutput: Sendable {
        /// (T, P): per-frame embeddings after the temporal adapter.
        public var frameEmbeddings: [[Float]]
        /// (P): the mean of `frameEmbeddings`.
        public var videoEmbedding: [Float]
        /// (C) VC head logits; nil when the model has no VC head.
        public var vcLogits: [Float]?
        /// Zero-shot probabilities over `labels`: softmax of s · cos(video, label).
        public var labelScores: [Float]
    }

    init(configuration c: M2CLIPConfiguration, reader: WeightReader, tokenizerFiles: TokenizerFileContents,
         labels: [String], labelEmbeddings: [Float]?, context: ComputeContext) throws {
        try c.validate(source: reader.path)
        configuration = c
        let d = c.clip.vision.encoder.hiddenSize
        var visualAdapters: [Int: BlockAdapters] = [:]
        if !c.ted.isEmpty {
            let grid = c.clip.vision.imageSize / c.clip.vision.patchSize
            for layer in c.ted.layers {
                func make(_ position: TEDConfiguration.Position) throws -> TEDAdapter? {
                    guard c.ted.positions.contains(position) else { return nil }
                    return try TEDAdapter(names: M2CLIPNames.ted(layer: layer, position: position),
                                          configuration: c.ted, hidden: d, grid: grid, reader: reader,
                                          context: context)
                }
                visualAdapters[layer] = BlockAdapters(preAttention: try make(.preAttention), preMLP: try make(.preMLP))
            }
        }
        vision = try VisionTower(configuration: c.clip.vision, projectionDim: c.clip.projectionDim,
                                 names: OpenAICLIPNames.vision, reader: reader, adapters: visualAdapters,
                                 context: context)
        postAdapter = c.postAdapter.enabled
            ? try PostAdapter(configuration: c.postAdapter, projectionDim: c.clip.projectionDim,
                              reader: reader, context: context)
            : nil
        classifier = c.classes > 0
            ? try reader.linear(M2CLIPNames.videoClassifier, in: d, out: c.classes, context: context)
            : nil
        var textAdapters: [Int: BlockAdapters] = [:]
        for layer in c.textAdapter.layers {
            func make(_ position: TEDConfiguration.Position) throws -> TextAdapter? {
                guard c.textAdapter.positions.contains(position) else { return nil }
                return try TextAdapter(names: M2CLIPNames.textAdapter(layer: layer, position: position),
                                       width: c.textAdapter.width, hidden: c.clip.text.encoder.hiddenSize,
                                       reader: reader, context: context)
            }
            textAdapters[layer] = BlockAdapters(preAttention: try make(.preAttention), preMLP: try make(.preMLP))
        }
        text = try TextTower(configuration: c.clip.text, projectionDim: c.clip.projectionDim,
                             names: OpenAICLIPNames.text, reader: reader, adapters: textAdapters,
                             context: context)
        logitScale = try reader.floats(OpenAICLIPNames.logitScale, shape: [])[0]
        let textLayers = c.clip.text.encoder.layers
        try reader.finish { name in
            name.hasPrefix(M2CLIPNames.mlmPrefix) || name == M2CLIPNames.labelTextEmbeddings
                || M2CLIPNames.isTextBlock(name, atOrAfter: textLayers)
        }
        var total = 0, adapters = 0
        for name in reader.consumed {
            let n = reader.source.shape(of: name)?.reduce(1, *) ?? 0
            total += n
            if M2CLIPNames.isTrainable(name) { adapters += n }
        }
        parameterCounts = (total, adapters)
        self.tokenizerFiles = tokenizerFiles
        tokenizer = try tokenizerFiles.tokenizer()
        self.labels = labels
        let p = c.clip.projectionDim
        if let labelEmbeddings {
            guard labelEmbeddings.count == labels.count * p else {
                throw CheckpointError(file: reader.path, tensor: M2CLIPNames.labelTextEmbeddings,
                                      "holds \(labelEmbeddings.count / max(p, 1)) embeddings for \(labels.count) labels")
            }
            self.labelEmbeddings = Tensor(shape: [labels.count, p], values: labelEmbeddings)
        } else {
            self.labelEmbeddings = Tensor(shape: [0, p])
            try setLabels(labels, context: context)
        }
    }

    /// The projected text embedding of `label` in the model's prompt template.
    public func labelEmbedding(_ label: String, context: ComputeContext) throws -> [Float] {
        let ids = tokenizer.encode(configuration.prompt(for: label), contextLength: text.configuration.maxPositions)
        return try text(ids: ids, context: context)
    }

    /// Replaces the label set and recomputes its text embeddings (open vocabulary: the
    /// image tower and the VC head are untouched).
    public func setLabels(_ labels: [String], promptTemplate: String? = nil, context: ComputeContext) throws {
        var c = configuration
        if let promptTemplate { c.promptTemplate = promptTemplate }
        try c.validate(source: "labels")
        let embeddings = try labels.flatMap { label -> [Float] in
            let ids = tokenizer.encode(c.prompt(for: label), contextLength: text.configuration.maxPositions)
            return try text(ids: ids, context: context)
        }
        self.labels = labels
        labelEmbeddings = Tensor(shape: [labels.count, c.clip.projectionDim], values: embeddings)
        configuration = c
    }

    /// Replaces the configuration (a relabelled model file's, whose heads were resized on
    /// disk: the loaded VC head is stale until the file is loaded again).
    package func reconfigure(_ c: M2CLIPConfiguration) {
        configuration = c
    }

    /// Sets labels with embeddings computed elsewhere (tests feeding token ids directly).
    func setLabels(_ labels: [String], embeddings: [[Float]]) {
        self.labels = labels
        labelEmbeddings = Tensor(shape: [labels.count, configuration.clip.projectionDim],
                                 values: embeddings.flatMap { $0 })
    }

    /// Runs `clips` clips of `frames` frames each.
    /// - Parameter pixels: (clips · frames, C, S, S), normalised, clip-major.
    public func callAsFunction(pixels: UnsafePointer<Float>, clips: Int, frames: Int,
                               context: ComputeContext, times: StageTimes? = nil,
                               trace: LayerTrace? = nil) -> [ClipOutput] {
        let c = configuration.clip
        let d = c.vision.encoder.hiddenSize, p = c.projectionDim, tokens = c.vision.tokens
        let hidden = vision.encode(pixels: pixels, clips: clips, framesPerClip: frames,
                                   firstTokenOnly: true, context: context, times: times, trace: trace)
        return times.measure("heads") {
            let embeddings = vision.frameEmbeddings(hidden, frames: clips * frames, context: context) // (clips·T, P)
            postAdapter?.apply(embeddings, clips: clips, frames: frames, context: context)
            var vcLogits: Tensor?
            if let classifier {
                // ln_post(mean_T CLS of the last block) → Linear
                let meanCLS = Tensor(shape: [clips, d])
                for b in 0..<clips {
                    let out = meanCLS.data + b * d
                    for t in 0..<frames {
                        let cls = hidden.data + (b * frames + t) * tokens * d
                        for j in 0..<d { out[j] += cls[j] }
                    }
                    for j in 0..<d { out[j] /= Float(frames) }
                }
                vision.postLayerNorm(meanCLS.data, rows: clips, into: meanCLS.data, context: context)
                let logits = Tensor(shape: [clips, classifier.outFeatures])
                classifier(meanCLS.data, rows: clips, into: logits.data, context: context)
                vcLogits = logits
            }
            return (0..<clips).map { b in
                let frameRows = (0..<frames).map { embeddings.row(b * frames + $0) }
                var video = [Float](repeating: 0, count: p)
                for row in frameRows { for j in 0..<p { video[j] += row[j] / Float(frames) } }
                return ClipOutput(frameEmbeddings: frameRows, videoEmbedding: video,
                                  vcLogits: vcLogits?.row(b), labelScores: zeroShotScores(video))
            }
        }
    }

    /// softmax over labels of exp(logit_scale) · cos(video, label).
    public func zeroShotScores(_ video: [Float]) -> [Float] {
        let p = configuration.clip.projectionDim, scale = exp(logitScale)
        let videoNorm = max(sqrt(video.reduce(0) { $0 + $1 * $1 }), 1e-12)
        let logits = (0..<labels.count).map { c -> Float in
            let w = labelEmbeddings.data + c * p
            var dot: Float = 0, norm: Float = 0
            for j in 0..<p { dot += video[j] * w[j]; norm += w[j] * w[j] }
            return scale * dot / (videoNorm * max(sqrt(norm), 1e-12))
        }
        return softmax(logits)
    }
}

/// Numerically stable softmax.
public func softmax(_ logits: [Float]) -> [Float] {
    guard let top = logits.max() else { return [] }
    let e = logits.map { exp($0 - top) }
    let sum = e.reduce(0, +)
    return e.map { $0 / sum }
}

/// The two files of a CLIP BPE vocabulary, as bytes.
struct TokenizerFileContents: Sendable {
    var vocabularyJSON: [UInt8]
    var merges: [UInt8]
    var source: String

    func tokenizer() throws -> CLIPTokenizer {
        try CLIPTokenizer(vocabularyJSON: vocabularyJSON, merges: merges, source: source)
    }

    /// vocab.json and merges.txt from a directory.
    static func read(directory: String) throws -> TokenizerFileContents {
        func read(_ name: String) throws -> [UInt8] {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CheckpointError(file: path, "cannot read the tokenizer file")
            }
            return [UInt8](data)
        }
        return TokenizerFileContents(vocabularyJSON: try read("vocab.json"), merges: try read("merges.txt"),
                                     source: directory)
    }

    /// The checkpoint's own files, else `fallback` (--tokenizer), else the bundled vocabulary.
    static func locate(checkpointDirectory: String?, fallback: String?) throws -> TokenizerFileContents {
        let fm = FileManager.default
        for directory in [checkpointDirectory, fallback].compactMap({ $0 }) {
            let dir = URL(fileURLWithPath: directory)
            if fm.fileExists(atPath: dir.appendingPathComponent("vocab.json").path),
               fm.fileExists(atPath: dir.appendingPathComponent("merges.txt").path) {
                return try read(directory: directory)
            }
            if directory == fallback {
                throw CheckpointError(file: directory, "--tokenizer: no vocab.json and merges.txt here")
            }
        }
        guard let bundled = BundledResources.tokenizerDirectory else {
            throw CheckpointError(file: "clip-tokenizer", "the bundled CLIP vocabulary is missing")
        }
        return try read(directory: bundled.path)
    }
}
