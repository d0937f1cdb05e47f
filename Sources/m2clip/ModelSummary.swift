import M2Model

/// What `m2clip inspect` shows of a model.
struct ModelSummary: Encodable {
    var configuration: M2CLIPConfiguration
    var parameters: Int
    var adapterParameters: Int
    var labels: [String]

    enum CodingKeys: String, CodingKey {
        case configuration, parameters, labels
        case adapterParameters = "adapter_parameters"
    }

    init(_ model: M2CLIPModel) {
        configuration = model.configuration
        let counts = model.parameterCounts
        parameters = counts.total
        adapterParameters = counts.adapters
        labels = model.labels
    }

    var oneLine: String {
        "\(Self.millions(parameters)) parameters (\(Self.millions(adapterParameters)) in adapters and heads), \(labels.count) labels"
    }

    var text: String {
        let c = configuration, v = c.clip.vision, t = c.clip.text
        var lines = [
            "image tower: width \(v.encoder.hiddenSize), \(v.encoder.layers) layers, \(v.encoder.heads) heads, patch \(v.patchSize), \(v.imageSize)px",
            "text tower: width \(t.encoder.hiddenSize), \(t.encoder.layers) layers, vocabulary \(t.vocabSize), context \(t.maxPositions)",
            "projection: \(c.clip.projectionDim)",
            "TED-Adapters: " + (c.ted.isEmpty ? "none" :
                "\(c.ted.positions.map(\.rawValue).joined(separator: "+")) in layers \(c.ted.layers), width \(c.ted.width), branches \([c.ted.temporalEnhancement ? "TE" : nil, c.ted.temporalDifference ? "TD" : nil].compactMap { $0 }.joined(separator: "+"))"),
            "post adapter: " + (c.postAdapter.enabled ? "width \(c.postAdapter.width)" : "none"),
            "text adapters: " + (c.textAdapter.layers.isEmpty ? "none" : "layers \(c.textAdapter.layers), width \(c.textAdapter.width)"),
            "VC head: " + (c.classes == 0 ? "none" : "\(c.classes) classes" + (c.vcHeadTrained ? "" : " (untrained: classification defaults to zero-shot)")),
            "frames per clip: \(c.frames); prompt: \"\(c.promptTemplate)\"",
            "parameters: \(oneLine)",
            "labels (\(labels.count)):",
        ]
        lines += labels.enumerated().map { "  \($0.offset): \($0.element)" }
        return lines.joined(separator: "\n")
    }

    static func millions(_ n: Int) -> String {
        n >= 1_000_000 ? String(format: "%.2fM", Double(n) / 1e6) : "\(n)"
    }
}
