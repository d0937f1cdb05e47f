/// A tokenizer file that cannot be used, and where: the file, and the line when there is one.
///
/// The description is one line, e.g.
/// `merges.txt line 17 (/models/clip/merges.txt): expected two symbols separated by one space, found "a b c"`.
public struct TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Path of the file at fault, as given to the initializer.
    public let file: String
    /// 1-based line of the problem, when the problem has one.
    public let line: Int?
    /// What is wrong, without the location.
    public let message: String

    public init(file: String, line: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        let name = file.split(separator: "/").last.map(String.init) ?? file
        let location = line.map { "\(name) line \($0)" } ?? name
        return "\(location) (\(file)): \(message)"
    }
}
