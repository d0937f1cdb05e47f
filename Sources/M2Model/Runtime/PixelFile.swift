import SafeTensors
import Ops

/// Frames given as a safetensors file holding `pixel_values` (N, C, H, W), fp32 (or f16/bf16),
/// already normalised — the layout transformers' CLIPImageProcessor produces.
public enum PixelFile {
    public static let tensorName = "pixel_values"

    /// Reads and checks the frames against the image tower's input size.
    public static func load(path: String, for vision: CLIPVisionConfiguration) throws -> Tensor {
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: error.tensor, error.message)
        }
        guard let info = file.info(tensorName) else {
            throw CheckpointError(file: path, tensor: tensorName, "missing (expected (N, \(vision.channels), \(vision.imageSize), \(vision.imageSize)))")
        }
        let s = info.shape
        guard s.count == 4, s[0] >= 1, s[1] == vision.channels, s[2] == vision.imageSize, s[3] == vision.imageSize else {
            throw CheckpointError(file: path, tensor: tensorName,
                                  "has shape \(s), expected (N, \(vision.channels), \(vision.imageSize), \(vision.imageSize))")
        }
        let values: [Float]
        do {
            values = try file.floats(tensorName)
        } catch let error as SafeTensorsError {
            throw CheckpointError(file: path, tensor: tensorName, error.message)
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw CheckpointError(file: path, tensor: tensorName, "value \(values[bad]) at flat index \(bad) is not finite")
        }
        return Tensor(shape: s, values: values)
    }
}
