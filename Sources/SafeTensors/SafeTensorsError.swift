/// A rejected file, a failed read or write, or a misuse of the writer. `description` is one line
/// (control characters in names are escaped):
///
///     checkpoint /x/model.safetensors: tensor vision_model.embeddings.class_embedding:
///     data_offsets [0, 3072] exceed data section of 1024 bytes
///
/// (shown wrapped here).
public struct SafeTensorsError: Error, CustomStringConvertible, Sendable {
    /// The file read or written; nil for errors of `SafeTensorsWriter.add` before any path is known.
    public var path: String?
    /// The tensor concerned, when there is one.
    public var tensor: String?
    /// What is wrong, without the path and tensor.
    public var message: String

    public init(path: String?, tensor: String? = nil, message: String) {
        self.path = path
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        var text = path.map { "checkpoint \($0): " } ?? "safetensors writer: "
        if let tensor { text += "tensor \(tensor): " }
        text += message
        // Names come from the file; keep a name holding a newline from splitting the line.
        guard text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            return text
        }
        return String(text.unicodeScalars.map { scalar in
            scalar.properties.generalCategory == .control ? scalar.escaped(asASCII: true) : String(scalar)
        }.joined())
    }
}
