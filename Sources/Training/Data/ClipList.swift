import Foundation

/// One clip of a training or validation list: a video file and its class.
public struct ClipListEntry: Sendable, Equatable {
    /// The video file, absolute or relative to the working directory (a relative path in the
    /// list is resolved against the list's directory).
    public var path: String
    /// Index into the model's label set.
    public var label: Int
    /// Where the entry came from, for messages: "train.txt:12", "train/riding a bike/x.mp4".
    public var source: String

    public init(path: String, label: Int, source: String) {
        self.path = path
        self.label = label
        self.source = source
    }
}

/// Reads the clip list a user brings, resolving every label against the model's label set
/// before any training starts:
///
/// - mmaction2 lines `path label`, split at the last run of whitespace so paths may hold
///   spaces; a label that is a name with spaces ("riding a bike") is found as the shortest
///   run of trailing words that names a class. `#` comments and blank lines are ignored.
/// - CSV `path,label` (`.csv` files): RFC 4180 quoting (`"a, b.mp4"`, `""` for a quote); a
///   first line whose label column is a header word (`label`, `class`, ...) is skipped.
/// - A directory with one subfolder per class, each video file in it one clip.
///
/// A label is a class index 0..<C or a class name: exact first, then ignoring case, then
/// also reading `_` as a space (folder names such as `riding_a_bike`). Errors name the file
/// and line: `clip list train.txt:12: unknown label 'ridng a bike' (nearest known: ...)`.
/// Missing video files are not an error here (the loader skips them); `missingFiles`
/// lists them so a caller can warn up front.
public enum ClipList {
    /// How the list is written; `read` picks it from the path unless told.
    public enum Format: Sendable, Equatable {
        case mmaction, csv, folders
    }

    /// File extensions taken as videos in a folder list (compared ignoring case).
    public static let videoExtensions: Set<String> = [
        "mp4", "m4v", "mov", "avi", "mkv", "webm", "mpg", "mpeg", "flv", "wmv", "3gp", "ts", "mts", "ogv",
    ]

    /// The entries of the list at `path`, in list order (a folder list: folders and files in
    /// name order). `format` nil: a directory is a folder list, a `.csv` file CSV, anything
    /// else mmaction2 lines. Throws `TrainingError` for a missing or empty list, a line that
    /// does not parse, an unknown label or an index outside 0..<labels.count.
    public static func read(_ path: String, labels: [String], format: Format? = nil) throws -> [ClipListEntry] {
        guard !labels.isEmpty else { throw TrainingError("clip list \(path): the model has no labels to resolve against") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TrainingError("clip list \(path): no such file or directory")
        }
        let chosen = format ?? (isDirectory.boolValue ? .folders
            : (URL(fileURLWithPath: path).pathExtension.lowercased() == "csv" ? .csv : .mmaction))
        let resolver = LabelResolver(labels: labels)
        let entries: [ClipListEntry]
        switch chosen {
        case .folders:
            guard isDirectory.boolValue else { throw TrainingError("clip list \(path): not a directory of class folders") }
            entries = try folders(path, resolver)
        case .mmaction, .csv:
            guard !isDirectory.boolValue else {
                throw TrainingError("clip list \(path): is a directory; a list file was expected")
            }
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw TrainingError("clip list \(path): cannot read it as UTF-8 text (\(error.localizedDescription))")
            }
            let base = URL(fileURLWithPath: path).deletingLastPathComponent()
            entries = chosen == .csv ? try csv(text, path, base, resolver) : try mmaction(text, path, base, resolver)
        }
        guard !entries.isEmpty else { throw TrainingError("clip list \(path): no clips in it") }
        return entries
    }

    /// The entries whose video file does not exist (or is a directory), in list order.
    public static func missingFiles(_ entries: [ClipListEntry]) -> [ClipListEntry] {
        entries.filter { entry in
            var isDirectory: ObjCBool = false
            return !FileManager.default.fileExists(atPath: entry.path, isDirectory: &isDirectory) || isDirectory.boolValue
        }
    }

    // MARK: - mmaction2 lines

    private static func mmaction(_ text: String, _ list: String, _ base: URL,
                                 _ resolver: LabelResolver) throws -> [ClipListEntry] {
        var entries: [ClipListEntry] = []
        for (number, raw) in lines(text) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2 else {
                throw TrainingError("clip list \(list):\(number): expected 'path label', found '\(line)'")
            }
            // Every split whose trailing words name a class is a candidate ("x.mp4 arm wrestling"
            // names both "arm wrestling" and "wrestling"): the one whose path is a file on disk,
            // else the one whose path ends in a video extension, else the shortest label.
            var candidates: [(path: String, label: Int)] = []
            for tail in 1..<words.count {
                let label = words[(words.count - tail)...].joined(separator: " ")
                if let index = try resolver.resolve(label, at: "\(list):\(number)", allowUnknown: true) {
                    candidates.append((pathBefore(words[words.count - tail], in: line), index))
                }
            }
            let found = candidates.first { FileManager.default.fileExists(atPath: resolve($0.path, against: base)) }
                ?? candidates.first { videoExtensions.contains(URL(fileURLWithPath: $0.path).pathExtension.lowercased()) }
                ?? candidates.first
            guard let found else {
                _ = try resolver.resolve(String(words.last!), at: "\(list):\(number)", allowUnknown: false)
                continue
            }
            entries.append(ClipListEntry(path: resolve(found.path, against: base), label: found.label,
                                         source: "\(list):\(number)"))
        }
        return entries
    }

    /// The text of `line` before the word `word` (a slice of it), without trailing blanks.
    private static func pathBefore(_ word: Substring, in line: String) -> String {
        String(line[..<word.startIndex]).trimmingCharacters(in: .whitespaces)
    }

    // MARK: - CSV

    private static let headerWords: Set<String> = [
        "label", "labels", "class", "classes", "class_name", "classname", "class_id", "category",
        "action", "label_id", "label_name", "target",
    ]

    private static func csv(_ text: String, _ list: String, _ base: URL,
                            _ resolver: LabelResolver) throws -> [ClipListEntry] {
        var entries: [ClipListEntry] = []
        var firstRecord = true
        for (number, raw) in lines(text) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = try csvFields(line, at: "\(list):\(number)")
            guard fields.count == 2 else {
                throw TrainingError("clip list \(list):\(number): expected 2 fields 'path,label', found \(fields.count) in '\(line)'")
            }
            let path = fields[0].trimmingCharacters(in: .whitespaces)
            let label = fields[1].trimmingCharacters(in: .whitespaces)
            defer { firstRecord = false }
            if firstRecord, headerWords.contains(label.lowercased()),
               try resolver.resolve(label, at: "", allowUnknown: true) == nil {
                continue
            }
            guard !path.isEmpty else { throw TrainingError("clip list \(list):\(number): empty path") }
            let index = try resolver.resolve(label, at: "\(list):\(number)", allowUnknown: false)!
            entries.append(ClipListEntry(path: resolve(path, against: base), label: index, source: "\(list):\(number)"))
        }
        return entries
    }

    /// The fields of one CSV record (RFC 4180 quoting; records do not span lines).
    static func csvFields(_ line: String, at place: String) throws -> [String] {
        var fields: [String] = []
        var field = ""
        var quoted = false, wasQuoted = false
        var characters = line.makeIterator()
        while let c = characters.next() {
            if quoted {
                if c == "\"" {
                    // A doubled quote is a literal one; a single quote closes the field. Swift
                    // has no peek, so look ahead by copying the iterator.
                    var ahead = characters
                    if ahead.next() == "\"" {
                        field.append("\"")
                        characters = ahead
                    } else {
                        quoted = false
                    }
                } else {
                    field.append(c)
                }
            } else if c == "," {
                fields.append(field)
                field = ""
                wasQuoted = false
            } else if c == "\"" && field.trimmingCharacters(in: .whitespaces).isEmpty && !wasQuoted {
                field = ""
                quoted = true
                wasQuoted = true
            } else if wasQuoted && c != " " && c != "\t" {
                throw TrainingError("clip list \(place): text after a closing quote in '\(line)'")
            } else if !wasQuoted {
                field.append(c)
            }
        }
        guard !quoted else { throw TrainingError("clip list \(place): a quote is not closed in '\(line)'") }
        fields.append(field)
        return fields
    }

    // MARK: - class folders

    private static func folders(_ root: String, _ resolver: LabelResolver) throws -> [ClipListEntry] {
        let manager = FileManager.default
        let rootURL = URL(fileURLWithPath: root)
        let names: [String]
        do {
            names = try manager.contentsOfDirectory(atPath: root).sorted()
        } catch {
            throw TrainingError("clip list \(root): cannot list the directory (\(error.localizedDescription))")
        }
        var entries: [ClipListEntry] = []
        for folder in names where !folder.hasPrefix(".") {
            let folderURL = rootURL.appendingPathComponent(folder)
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: folderURL.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                continue
            }
            let place = "\(root)/\(folder)"
            guard let label = try resolver.resolve(folder, at: "", allowUnknown: true) else {
                throw TrainingError("clip list \(place): folder '\(folder)' names no class "
                                    + "(\(resolver.nearest(folder)))")
            }
            let files: [String]
            do {
                files = try manager.contentsOfDirectory(atPath: folderURL.path).sorted()
            } catch {
                throw TrainingError("clip list \(place): cannot list the folder (\(error.localizedDescription))")
            }
            for file in files where !file.hasPrefix(".")
                && videoExtensions.contains(URL(fileURLWithPath: file).pathExtension.lowercased()) {
                entries.append(ClipListEntry(path: folderURL.appendingPathComponent(file).path, label: label,
                                             source: "\(place)/\(file)"))
            }
        }
        return entries
    }

    // MARK: - shared

    /// Numbered lines (from 1), accepting \n, \r\n and a leading byte-order mark.
    private static func lines(_ text: String) -> [(Int, String)] {
        var body = Substring(text)
        if body.hasPrefix("\u{FEFF}") { body = body.dropFirst() }
        return body.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            .enumerated().map { ($0.offset + 1, String($0.element)) }
    }

    private static func resolve(_ path: String, against base: URL) -> String {
        if path.hasPrefix("/") { return path }
        return base.appendingPathComponent(path).standardizedFileURL.path
    }
}

/// Label text → class index: an index 0..<C, else a name exact, ignoring case, or with `_`
/// read as a space.
struct LabelResolver {
    let labels: [String]
    private let exact: [String: Int]
    private let folded: [String: Int]
    private let spaced: [String: Int]

    init(labels: [String]) {
        self.labels = labels
        var exact: [String: Int] = [:], folded: [String: Int] = [:], spaced: [String: Int] = [:]
        for (i, name) in labels.enumerated() {
            if exact[name] == nil { exact[name] = i }
            let key = name.lowercased()
            if folded[key] == nil { folded[key] = i }
            let space = key.replacingOccurrences(of: "_", with: " ")
            if spaced[space] == nil { spaced[space] = i }
        }
        self.exact = exact
        self.folded = folded
        self.spaced = spaced
    }

    /// The class index of `text`; nil when unknown and `allowUnknown`, else an error at
    /// `place` ("train.txt:12"). An integer out of range is always an error.
    func resolve(_ text: String, at place: String, allowUnknown: Bool) throws -> Int? {
        if let index = Int(text) {
            guard (0..<labels.count).contains(index) else {
                throw TrainingError("clip list \(place): label index \(index) is outside the model's "
                                    + "\(labels.count) labels (0..<\(labels.count))")
            }
            return index
        }
        let key = text.lowercased()
        if let index = exact[text] ?? folded[key] ?? spaced[key.replacingOccurrences(of: "_", with: " ")] {
            return index
        }
        if allowUnknown { return nil }
        throw TrainingError("clip list \(place): unknown label '\(text)' (\(nearest(text)))")
    }

    /// "nearest known: 'a', 'b', 'c' of 400 labels": the five closest names by edit distance.
    func nearest(_ text: String) -> String {
        let key = Array(text.lowercased())
        let ranked = labels.enumerated()
            .map { (distance: Self.editDistance(key, Array($0.element.lowercased())), index: $0.offset) }
            .sorted { ($0.distance, $0.index) < ($1.distance, $1.index) }
            .prefix(5).map { "'\(labels[$0.index])'" }
        return "nearest known: \(ranked.joined(separator: ", ")) of \(labels.count) labels"
    }

    /// Levenshtein distance.
    static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        var current = previous
        for i in 1...a.count {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
