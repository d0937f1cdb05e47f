import Foundation

/// A list of class names, read from a CSV file with an `id,name` header (as
/// `kinetics_400_labels.csv`; ids must be 0..<C, in any order; names may be quoted) or from a
/// plain file with one label per line.
public enum LabelSet {
    public static func load(path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError(file: path, "cannot read the label file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CheckpointError(file: path, "label file is not UTF-8 text")
        }
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
        while lines.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { lines.removeLast() }
        guard let first = lines.first else { throw CheckpointError(file: path, "label file is empty") }
        let header = parseCSVLine(first).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let labels: [String]
        if header.count == 2 && header[0] == "id" && header[1] == "name" {
            var byID: [Int: String] = [:]
            for (n, line) in lines.enumerated().dropFirst() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                let fields = parseCSVLine(line)
                guard fields.count == 2, let id = Int(fields[0].trimmingCharacters(in: .whitespaces)) else {
                    throw CheckpointError(file: path, "line \(n + 1): expected id,name, found \"\(line)\"")
                }
                guard byID[id] == nil else { throw CheckpointError(file: path, "line \(n + 1): id \(id) repeats") }
                byID[id] = fields[1].trimmingCharacters(in: .whitespaces)
            }
            guard byID.keys.sorted() == Array(0..<byID.count) else {
                throw CheckpointError(file: path, "ids must be 0..<\(byID.count) without gaps")
            }
            labels = (0..<byID.count).map { byID[$0]! }
        } else {
            labels = lines.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        guard !labels.isEmpty else { throw CheckpointError(file: path, "label file has no labels") }
        if let empty = labels.firstIndex(where: \.isEmpty) {
            throw CheckpointError(file: path, "label \(empty) is empty")
        }
        return labels
    }

    /// One CSV record: comma-separated, fields optionally in double quotes with "" escapes.
    static func parseCSVLine(_ line: String) -> [String] {
        var fields: [String] = [], field = "", quoted = false
        var chars = line.makeIterator()
        while let ch = chars.next() {
            if quoted {
                if ch == "\"" {
                    if let next = chars.next() {
                        if next == "\"" { field.append("\"") } else {
                            quoted = false
                            if next == "," { fields.append(field); field = "" } else { field.append(next) }
                        }
                    } else { quoted = false }
                } else { field.append(ch) }
            } else if ch == "\"" && field.trimmingCharacters(in: .whitespaces).isEmpty {
                field = ""
                quoted = true
            } else if ch == "," {
                fields.append(field)
                field = ""
            } else {
                field.append(ch)
            }
        }
        fields.append(field)
        return fields
    }
}
