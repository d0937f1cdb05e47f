import Foundation
import M2Model
import SafeTensors

/// One training batch (`m2clip train grad --batch`): B clips of T frames with their labels and
/// prompts, as a safetensors file.
public struct TrainingBatch: Sendable {
    public var clips: Int
    public var frames: Int
    /// pixel_values (B, T, 3, H, W), CLIP-normalised.
    public var pixels: [Float]
    /// labels (B): class indices into the model's label set.
    public var labels: [Int]
    /// input_ids (B, 77): each clip's prompt (masked where masked), zero padded after EOT.
    public var inputIDs: [[Int32]]
    /// mlm_labels (B, 77): the MLM word index at masked positions, −100 elsewhere; nil: no CMLM term.
    public var mlmLabels: [[Int]]?

    public static let ignoredLabel = -100

    public init(clips: Int, frames: Int, pixels: [Float], labels: [Int], inputIDs: [[Int32]], mlmLabels: [[Int]]?) {
        self.clips = clips
        self.frames = frames
        self.pixels = pixels
        self.labels = labels
        self.inputIDs = inputIDs
        self.mlmLabels = mlmLabels
    }

    /// The clips `range` of this batch (a micro-batch).
    public func slice(_ range: Range<Int>) -> TrainingBatch {
        let perClip = pixels.count / max(clips, 1)
        return TrainingBatch(clips: range.count, frames: frames,
                             pixels: Array(pixels[(range.lowerBound * perClip)..<(range.upperBound * perClip)]),
                             labels: Array(labels[range]), inputIDs: Array(inputIDs[range]),
                             mlmLabels: mlmLabels.map { Array($0[range]) })
    }

    /// Reads and checks a batch file against `model`; every error names the file and tensor.
    public static func read(path: String, for model: TrainingModel) throws -> TrainingBatch {
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: path)
        } catch let error as SafeTensorsError {
            throw TrainingError("batch \(path): \(error.tensor.map { "tensor \($0): " } ?? "")\(error.message)")
        }
        func fail(_ tensor: String, _ why: String) -> TrainingError {
            TrainingError("batch \(path): tensor \(tensor) \(why)")
        }
        func shape(_ name: String) throws -> [Int] {
            guard let info = file.info(name) else { throw fail(name, "is missing") }
            return info.shape
        }
        func load<T>(_ name: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let error as SafeTensorsError { throw fail(name, error.message) }
        }
        let c = model.model.configuration.clip
        let pixelShape = try shape("pixel_values")
        let side = c.vision.imageSize
        guard pixelShape.count == 5, pixelShape[2] == c.vision.channels, pixelShape[3] == side, pixelShape[4] == side,
              pixelShape[0] > 0, pixelShape[1] > 0 else {
            throw fail("pixel_values", "has shape \(pixelShape), expected [B, T, \(c.vision.channels), \(side), \(side)]")
        }
        let b = pixelShape[0], t = pixelShape[1]
        guard file.info("pixel_values")!.dtype.isConvertibleToFloat else {
            throw fail("pixel_values", "has dtype \(file.info("pixel_values")!.dtype), expected F32")
        }
        let pixels = try load("pixel_values") { try file.floats("pixel_values") }
        if let bad = pixels.firstIndex(where: { !$0.isFinite }) {
            throw fail("pixel_values", "holds a non-finite value at flat index \(bad)")
        }
        let labelShape = try shape("labels")
        guard labelShape == [b] else { throw fail("labels", "has shape \(labelShape), expected [\(b)] (one per clip)") }
        let labels = try load("labels") { try file.int64s("labels") }.map { Int($0) }
        let classes = model.model.labels.count
        if let i = labels.firstIndex(where: { !(0..<classes).contains($0) }) {
            throw fail("labels", "[\(i)] = \(labels[i]) is outside the model's \(classes) labels")
        }
        let context = c.text.maxPositions
        let idShape = try shape("input_ids")
        guard idShape == [b, context] else { throw fail("input_ids", "has shape \(idShape), expected [\(b), \(context)]") }
        let flatIDs = try load("input_ids") { try file.int64s("input_ids") }
        if let i = flatIDs.firstIndex(where: { $0 < 0 || $0 >= c.text.vocabSize }) {
            throw fail("input_ids", "[\(i / context)][\(i % context)] = \(flatIDs[i]) is outside the vocabulary of \(c.text.vocabSize)")
        }
        let ids = (0..<b).map { i in flatIDs[(i * context)..<((i + 1) * context)].map { Int32($0) } }
        var mlm: [[Int]]?
        if file.contains("mlm_labels") {
            let mlmShape = try shape("mlm_labels")
            guard mlmShape == [b, context] else { throw fail("mlm_labels", "has shape \(mlmShape), expected [\(b), \(context)]") }
            let words = model.mlmWords.count
            guard words > 0 else {
                throw fail("mlm_labels", "is given but the model has no CMLM head (convert it with one)")
            }
            let flat = try load("mlm_labels") { try file.int64s("mlm_labels") }.map { Int($0) }
            if let i = flat.firstIndex(where: { $0 != ignoredLabel && !(0..<words).contains($0) }) {
                throw fail("mlm_labels", "[\(i / context)][\(i % context)] = \(flat[i]) is neither -100 nor a word of the model's \(words)-word MLM vocabulary")
            }
            let rows = (0..<b).map { i in Array(flat[(i * context)..<((i + 1) * context)]) }
            for (i, row) in rows.enumerated() {
                let eot = model.model.text.pooledIndex(ids[i])
                if let p = row.indices.first(where: { row[$0] != ignoredLabel && $0 >= eot }) {
                    throw fail("mlm_labels", "[\(i)] labels position \(p), at or after the prompt's end of text (\(eot))")
                }
            }
            mlm = rows
        }
        for name in file.names where !["pixel_values", "labels", "input_ids", "mlm_labels"].contains(name) {
            throw fail(name, "is not part of a training batch (pixel_values, labels, input_ids, mlm_labels)")
        }
        return TrainingBatch(clips: b, frames: t, pixels: pixels, labels: labels, inputIDs: ids, mlmLabels: mlm)
    }
}
