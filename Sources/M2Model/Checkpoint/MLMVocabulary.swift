import Foundation

/// The word vocabulary of the MLM head (spec §4, §9): decoder row k predicts word k.
public enum MLMVocabulary {
    /// Reads a vocabulary file: one word a line, or the release's `word index` lines
    /// (`k400_mlm_lables.txt`), where the index gives the word's row. Blank lines are
    /// skipped; errors name the file and the line.
    public static func load(path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError(file: path, "cannot read the MLM vocabulary file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CheckpointError(file: path, "MLM vocabulary file is not UTF-8 text")
        }
        return try parse(text, source: path)
    }

    /// Parses the text of a vocabulary file; `source` names it in errors.
    public static func parse(_ text: String, source: String) throws -> [String] {
        enum Form { case plain, indexed }
        var form: Form?
        var entries: [(word: String, index: Int?, line: Int)] = []
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let fields = line.split(whereSeparator: \.isWhitespace).map(String.init)
            if fields.isEmpty { continue }
            let lineForm: Form
            let index: Int?
            switch fields.count {
            case 1:
                lineForm = .plain
                index = nil
            case 2:
                guard let i = Int(fields[1]) else {
                    throw CheckpointError(file: source, "line \(n + 1): expected a word or \"word index\", found \"\(line)\"")
                }
                lineForm = .indexed
                index = i
            default:
                throw CheckpointError(file: source, "line \(n + 1): expected a word or \"word index\", found \"\(line)\"")
            }
            if let form, form != lineForm {
                throw CheckpointError(file: source, "line \(n + 1): mixes \"word index\" lines with plain word lines")
            }
            form = lineForm
            entries.append((fields[0], index, n + 1))
        }
        guard !entries.isEmpty else { throw CheckpointError(file: source, "MLM vocabulary file has no words") }
        var firstLine: [String: Int] = [:]
        for entry in entries {
            if let line = firstLine[entry.word] {
                throw CheckpointError(file: source, "line \(entry.line): word \"\(entry.word)\" repeats (first on line \(line))")
            }
            firstLine[entry.word] = entry.line
        }
        guard form == .indexed else { return entries.map(\.word) }
        var words = [String?](repeating: nil, count: entries.count)
        var indexLine: [Int: Int] = [:]
        for entry in entries {
            let index = entry.index!
            guard (0..<entries.count).contains(index) else {
                throw CheckpointError(file: source, "line \(entry.line): index \(index) is outside 0..<\(entries.count) (the file has \(entries.count) words)")
            }
            if let line = indexLine[index] {
                throw CheckpointError(file: source, "line \(entry.line): index \(index) repeats (first on line \(line))")
            }
            indexLine[index] = entry.line
            words[index] = entry.word
        }
        // n distinct indices in 0..<n: every row has its word.
        return words.map { $0! }
    }

    /// The words of the label set's prompts: each label in `promptTemplate`, lower-cased and
    /// split on whitespace; distinct, sorted by their UTF-8 bytes as the release's word files
    /// are (`a 0`, `abseiling 1`, …).
    public static func words(labels: [String], promptTemplate: String) -> [String] {
        var words = Set<String>()
        for label in labels {
            let prompt = promptTemplate.replacingOccurrences(of: "{}", with: label).lowercased()
            for word in prompt.split(whereSeparator: \.isWhitespace) { words.insert(String(word)) }
        }
        return words.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
}
