import Foundation

/// A problem with a checkpoint or configuration file, said in one line:
/// "checkpoint /m/model.safetensors: tensor visual.proj: has shape [768, 256], expected [768, 512]".
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let tensor: String?
    public let message: String

    public init(file: String, tensor: String? = nil, _ message: String) {
        self.file = file
        self.tensor = tensor
        self.message = message
    }

    public var description: String {
        if let tensor { return "checkpoint \(file): tensor \(tensor): \(message)" }
        return "checkpoint \(file): \(message)"
    }

    /// A DecodingError as "field text_config.hidden_size: expected Int".
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "field \(path(context.codingPath)): expected \(type)"
        case .valueNotFound(let type, let context):
            return "field \(path(context.codingPath)): missing \(type) value"
        case .keyNotFound(let key, let context):
            return "field \(path(context.codingPath + [key])): missing"
        case .dataCorrupted(let context):
            let underlying = (context.underlyingError as NSError?)?.localizedDescription
            return "invalid JSON\(context.codingPath.isEmpty ? "" : " at \(path(context.codingPath))")"
                + (underlying.map { ": \($0)" } ?? "")
        @unknown default:
            return "\(error)"
        }
    }
}
