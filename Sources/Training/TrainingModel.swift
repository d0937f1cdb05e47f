import CKernels
import Foundation
import M2Model
import Ops

/// An M²-CLIP model set up for training (spec §9): the frozen towers (fp32, packed once), a
/// trainer for every adapter and head, and one gradient buffer per trainable parameter under
/// its release name.
public final class TrainingModel: @unchecked Sendable {
    public let model: M2CLIPModel
    public let gradients = GradientSet()
    let vision: EncoderTrainer
    let postAdapter: PostAdapterTrainer?
    let classifierGradient: LinearGradient?
    let text: EncoderTrainer
    let cmlm: CMLMTrainer?
    public var lossWeights: LossWeights
    /// The label set's prompts through the frozen text blocks, rebuilt when the labels change.
    var classPrompts: ClassPromptCache?
    /// The class prompts' token ids, one list per label, instead of tokenizing the labels
    /// (fixtures whose made-up vocabulary no tokenizer produces). Set before the first step.
    package var classTokenIDs: [[Int32]]?

    /// Loads a model file for training: weights widened to fp32, the CMLM block and MLM head
    /// read when the configuration has them.
    public convenience init(modelFile path: String, context: ComputeContext) throws {
        let model = try ModelFile.load(path: path, context: context, fp32: true)
        let reader = try WeightReader(path: path)
        reader.widensSixteenBit = true
        try self.init(model: model, reader: reader, context: context)
    }

    /// - Parameter reader: the weights the model was loaded from (for the training-only parts).
    package init(model: M2CLIPModel, reader: WeightReader, context: ComputeContext) throws {
        let c = model.configuration
        if let q = c.quantization {
            throw TrainingError("\(reader.path): a \(q.scheme) model file cannot be trained; train the fp32 model and quantize the result")
        }
        self.model = model
        lossWeights = c.lossWeights ?? .paper
        let g = gradients
        // image tower: TED-Adapters by block and position
        let layers = model.vision.encoder.layers.count
        func ted(_ layer: Int, _ position: TEDConfiguration.Position, _ a: ResidualAdapter?) -> AdapterTrainer? {
            guard let adapter = a as? TEDAdapter else { return nil }
            return TEDAdapterTrainer(adapter, names: M2CLIPNames.ted(layer: layer, position: position), gradients: g)
        }
        var pre: [AdapterTrainer?] = [], mlp: [AdapterTrainer?] = []
        for l in 0..<layers {
            let a = model.vision.encoder.adapters[l]
            pre.append(ted(l, .preAttention, a.preAttention))
            mlp.append(ted(l, .preMLP, a.preMLP))
        }
        vision = EncoderTrainer(encoder: model.vision.encoder, preAttention: pre, preMLP: mlp, causal: false)
        postAdapter = model.postAdapter.map { PostAdapterTrainer($0, gradients: g) }
        classifierGradient = model.classifier.map { LinearGradient($0) }
        if let cg = classifierGradient { g.register(M2CLIPNames.videoClassifier, cg) }
        // text tower: text adapters by block and position
        func textAdapter(_ layer: Int, _ position: TEDConfiguration.Position, _ a: ResidualAdapter?) -> AdapterTrainer? {
            guard let adapter = a as? TextAdapter else { return nil }
            return TextAdapterTrainer(adapter, names: M2CLIPNames.textAdapter(layer: layer, position: position),
                                      gradients: g)
        }
        pre = []
        mlp = []
        for l in 0..<model.text.encoder.layers.count {
            let a = model.text.encoder.adapters[l]
            pre.append(textAdapter(l, .preAttention, a.preAttention))
            mlp.append(textAdapter(l, .preMLP, a.preMLP))
        }
        text = EncoderTrainer(encoder: model.text.encoder, preAttention: pre, preMLP: mlp, causal: true)
        cmlm = try c.cmlm.map {
            try CMLMTrainer(model: model, configuration: $0, reader: reader, gradients: g, context: context)
        }
        try checkFP32(reader.path)
        // A step frees and allocates the same large tensors every step: keep them (up to a
        // quarter of the machine's memory) instead of faulting them in again each step.
        m2k_alloc_cache_begin(Self.allocationCacheBytes)
    }

    deinit { m2k_alloc_cache_end() }

    /// What the allocator may keep of freed large blocks while a model trains.
    static var allocationCacheBytes: Int { Int(ProcessInfo.processInfo.physicalMemory / 4) }

    /// Every Linear the backward runs through must be fp32 panels.
    private func checkFP32(_ path: String) throws {
        var layers: [Linear] = [model.vision.projection, model.text.projection]
        for e in [model.vision.encoder, model.text.encoder] {
            for l in e.layers { layers += [l.qkv, l.outProjection, l.fc1, l.fc2] }
        }
        if let bad = layers.first(where: { $0.precision != .fp32 }) {
            throw TrainingError("\(path): training needs fp32 weights; a \(bad.precision.rawValue) layer was loaded")
        }
    }

    /// Recompute each block's fc1 output in the backward instead of keeping it (both towers):
    /// the same gradients with about a third less activation memory, for one more fc1 GEMM a block.
    public var recomputesMLP: Bool {
        get { vision.recomputesMLPHidden }
        set {
            vision.recomputesMLPHidden = newValue
            text.recomputesMLPHidden = newValue
        }
    }

    /// Number of trainable parameters.
    public var trainableParameters: Int { gradients.parameterCount }

    /// The MLM vocabulary (empty without a CMLM head).
    public var mlmWords: [String] { cmlm?.words ?? [] }
}
