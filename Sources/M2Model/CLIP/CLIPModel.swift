import Foundation
import Ops

/// A CLIP model loaded from a Hugging Face checkpoint directory (`config.json` +
/// `model.safetensors`), either tower or both.
public final class CLIPModel: @unchecked Sendable {
    public let configuration: CLIPConfiguration
    public let vision: VisionTower?
    public let text: TextTower?
    /// `logit_scale` as stored (a log); the similarity scale is its exponential.
    public let logitScale: Float

    public enum Towers: Sendable { case both, vision, text }

    /// Loads strictly: a missing, unexpected or mis-shaped tensor is an error naming it.
    /// With `towers` other than `.both`, the other tower's tensors are skipped, not loaded.
    public init(directory: String, towers: Towers = .both, context: ComputeContext) throws {
        let dir = URL(fileURLWithPath: directory)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory),
              isDirectory.boolValue else {
            throw CheckpointError(file: directory, "not a directory (expected a Hugging Face CLIP checkpoint directory)")
        }
        let configPath = dir.appendingPathComponent("config.json").path
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw CheckpointError(file: configPath, "missing (every Hugging Face checkpoint has one)")
        }
        let config = try CLIPConfiguration.load(path: configPath)
        let reader = WeightReader(source: try HuggingFaceWeights.open(directory: directory))
        configuration = config
        vision = towers == .text ? nil
            : try VisionTower(configuration: config.vision, projectionDim: config.projectionDim,
                              names: HFCLIPNames.vision, reader: reader, context: context)
        text = towers == .vision ? nil
            : try TextTower(configuration: config.text, projectionDim: config.projectionDim,
                            names: HFCLIPNames.text, reader: reader, context: context)
        logitScale = try reader.floats(HFCLIPNames.logitScale, shape: [])[0]
        try reader.finish { name in
            HFCLIPNames.vision.buffers.contains(name) || HFCLIPNames.text.buffers.contains(name)
                || (towers == .text && (name.hasPrefix(HFCLIPNames.vision.prefix) || name == HFCLIPNames.visualProjection))
                || (towers == .vision && HFCLIPNames.text.owns(name))
        }
    }
}
