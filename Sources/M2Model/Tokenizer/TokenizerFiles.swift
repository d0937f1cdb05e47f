import Foundation

/// Reading of the two files of a Hugging Face BPE tokenizer: `vocab.json` and `merges.txt`.
///
/// Tokens are kept as their UTF-8 bytes: Swift `String` equality is canonical equivalence, while
/// the files (and the Rust `tokenizers` library) compare tokens code point by code point.
enum TokenizerFiles {
    /// The whole file, or an error that names it.
    static func contents(of path: String) throws(TokenizerError) -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError(file: path, message: "file not found")
        }
        guard !isDirectory.boolValue else {
            throw TokenizerError(file: path, message: "is a directory, expected a file")
        }
        do {
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw TokenizerError(file: path, message: "cannot read: \(error.localizedDescription)")
        }
    }

    /// `vocab.json`: one JSON object mapping each token to its id, e.g. `{"!": 0, "a</w>": 320}`.
    ///
    /// As with Python's `json.load`, a key given twice keeps its last id.
    static func readVocabulary(path: String) throws(TokenizerError) -> [[UInt8]: Int32] {
        try readVocabulary(bytes: contents(of: path), path: path)
    }

    static func readVocabulary(bytes: [UInt8], path: String) throws(TokenizerError) -> [[UInt8]: Int32] {
        var parser = FlatJSONObjectParser(bytes: bytes, path: path)
        return try parser.parse()
    }

    /// One merge of `merges.txt`: the two symbols, as UTF-8, and the 1-based line it was on.
    struct MergeLine {
        var left: ArraySlice<UInt8>
        var right: ArraySlice<UInt8>
        var line: Int
    }

    /// `merges.txt`: one merge a line, two symbols separated by one space, in rank order.
    ///
    /// Lines that start with `#version` are skipped, as `tokenizers` does; a final newline ends
    /// the last line rather than opening an empty one; `\r\n` endings are accepted.
    static func readMerges(path: String) throws(TokenizerError) -> [MergeLine] {
        try readMerges(bytes: contents(of: path), path: path)
    }

    static func readMerges(bytes: [UInt8], path: String) throws(TokenizerError) -> [MergeLine] {
        var merges: [MergeLine] = []
        merges.reserveCapacity(bytes.count / 10)
        var lineStart = 0
        var lineNumber = 0
        while lineStart < bytes.count {
            lineNumber += 1
            var lineEnd = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            let nextLineStart = lineEnd + 1
            if lineEnd > lineStart, bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            let line = bytes[lineStart..<lineEnd]
            lineStart = nextLineStart
            if line.starts(with: "#version".utf8) { continue }

            let space = line.firstIndex(of: UInt8(ascii: " "))
            guard let space, space == line.lastIndex(of: UInt8(ascii: " ")),
                  space > line.startIndex, space < line.endIndex - 1 else {
                let shown = String(decoding: line.prefix(80), as: UTF8.self)
                throw TokenizerError(
                    file: path, line: lineNumber,
                    message: "expected two symbols separated by one space, found \(shown.debugDescription)")
            }
            merges.append(MergeLine(left: line[..<space], right: line[(space + 1)...], line: lineNumber))
        }
        return merges
    }
}

/// A parser for the one shape `vocab.json` has: a JSON object whose values are integer ids.
///
/// Hand-written so that errors carry a line number and the load stays well under the cost of a
/// general JSON decoder building 49k boxed values.
private struct FlatJSONObjectParser {
    let bytes: [UInt8]
    let path: String
    var position = 0

    init(bytes: [UInt8], path: String) {
        self.bytes = bytes
        self.path = path
    }

    mutating func parse() throws(TokenizerError) -> [[UInt8]: Int32] {
        var ids: [[UInt8]: Int32] = [:]
        ids.reserveCapacity(bytes.count / 16)
        try validateUTF8()
        skipByteOrderMark()
        skipWhitespace()
        try expect(UInt8(ascii: "{"), "expected '{' opening the vocabulary object")
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            position += 1
        } else {
            while true {
                skipWhitespace()
                guard peek() == UInt8(ascii: "\"") else { throw failure("expected a string key") }
                let key = try parseString()
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "expected ':' after a key")
                skipWhitespace()
                ids[key] = try parseID(key: key)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") {
                    position += 1
                    continue
                }
                try expect(UInt8(ascii: "}"), "expected ',' or '}' after a value")
                break
            }
        }
        skipWhitespace()
        guard position == bytes.count else { throw failure("unexpected text after the vocabulary object") }
        return ids
    }

    // MARK: Values

    /// A JSON string, returned as UTF-8; escapes are decoded, invalid UTF-8 is refused.
    private mutating func parseString() throws(TokenizerError) -> [UInt8] {
        let start = position
        position += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard let byte = peek() else {
                position = start
                throw failure("unterminated string")
            }
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return out
            case UInt8(ascii: "\\"):
                position += 1
                try appendEscape(to: &out)
            case 0..<0x20:
                throw failure("control character U+\(hex(UInt32(byte))) inside a string")
            default:
                out.append(byte)
                position += 1
            }
        }
    }

    private mutating func appendEscape(to out: inout [UInt8]) throws(TokenizerError) {
        guard let escape = peek() else { throw failure("unterminated escape") }
        position += 1
        switch escape {
        case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            var value = try parseHex4()
            if (0xD800..<0xDC00).contains(value) {
                // A high surrogate must be followed by an escaped low surrogate.
                guard peek() == UInt8(ascii: "\\"), peek(1) == UInt8(ascii: "u") else {
                    throw failure("unpaired surrogate \\u\(hex(value))")
                }
                position += 2
                let low = try parseHex4()
                guard (0xDC00..<0xE000).contains(low) else {
                    throw failure("unpaired surrogate \\u\(hex(value))")
                }
                value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
            }
            guard let scalar = Unicode.Scalar(value) else { throw failure("unpaired surrogate \\u\(hex(value))") }
            out.append(contentsOf: String(scalar).utf8)
        default:
            position -= 1
            throw failure("invalid escape '\\\(String(decoding: [escape], as: UTF8.self))'")
        }
    }

    private mutating func parseHex4() throws(TokenizerError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek(), let digit = hexDigit(byte) else {
                throw failure("expected four hexadecimal digits after \\u")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    /// A non-negative JSON integer that fits an `Int32`.
    private mutating func parseID(key: [UInt8]) throws(TokenizerError) -> Int32 {
        let start = position
        // Take the whole JSON number, so that "1.5" or "-1" is refused as a whole.
        while let byte = peek(), byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".")
            || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
            position += 1
        }
        let digits = bytes[start..<position]
        guard !digits.isEmpty else { throw failure("expected an integer id") }
        let isJSONInteger = digits.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
            && (digits.count == 1 || digits.first != UInt8(ascii: "0"))
        guard isJSONInteger, let id = Int32(String(decoding: digits, as: UTF8.self)) else {
            position = start
            throw failure("""
                id \(String(decoding: digits, as: UTF8.self)) of token \(String(decoding: key, as: UTF8.self).debugDescription) \
                is not an integer in 0...\(Int32.max)
                """)
        }
        return id
    }

    // MARK: Scanning

    /// Refuses a file that is not UTF-8, as Python's `json.load` on a UTF-8 text file does.
    private mutating func validateUTF8() throws(TokenizerError) {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded): offset += encoded.count
            case .emptyInput: return
            case .error:
                position = offset
                throw failure("invalid UTF-8")
            }
        }
    }

    private func peek(_ offset: Int = 0) -> UInt8? {
        position + offset < bytes.count ? bytes[position + offset] : nil
    }

    private mutating func expect(_ byte: UInt8, _ message: String) throws(TokenizerError) {
        guard peek() == byte else { throw failure(message) }
        position += 1
    }

    private mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
            position += 1
        }
    }

    private mutating func skipByteOrderMark() {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }

    /// An error at the current position: "invalid JSON at column C: message".
    private func failure(_ message: String) -> TokenizerError {
        let end = min(position, bytes.count)
        var line = 1
        var lineStart = 0
        for index in 0..<end where bytes[index] == 0x0A {
            line += 1
            lineStart = index + 1
        }
        let column = String(decoding: bytes[lineStart..<end], as: UTF8.self).count + 1
        return TokenizerError(file: path, line: line, message: "invalid JSON at column \(column): \(message)")
    }
}

private func hexDigit(_ byte: UInt8) -> UInt32? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
    default: nil
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
