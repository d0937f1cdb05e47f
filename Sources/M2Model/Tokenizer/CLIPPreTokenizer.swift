import Foundation

/// Cuts text into the pieces that BPE encodes one by one, as `transformers.CLIPTokenizer` (5.x,
/// built on `tokenizers`) does before its BPE model:
///
/// 1. The special tokens `<|startoftext|>` and `<|endoftext|>` written in the raw text are taken
///    out whole (they are added tokens with `normalized: false`).
/// 2. Each stretch between them is normalized: NFC, every run of `\s` to one space, then
///    lower-casing code point by code point (`İ` becomes `i` + U+0307; `Σ` always becomes `σ`).
/// 3. CLIP's split regex keeps its matches and drops what lies between them (white space):
///    `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
/// 4. The byte-level pre-tokenizer then splits each match again with GPT-2's regex. That only
///    changes the special-token matches of step 3 (`<|endoftext|>` written in capitals, which
///    step 1 does not catch): they become `<|`, `endoftext`, `|>`.
///
/// `\s`, `\p{L}` and `\p{N}` are Oniguruma's: White_Space (Zs, Zl, Zp, U+0009–U+000D, U+0085),
/// the five letter categories, and the three number categories.
///
/// The Unicode tables of `tokenizers` 0.23 are older than the standard library's: its NFC knows
/// Unicode 9.0 and its regex engine Unicode 16.0. Code points assigned later are treated as
/// those tables see them, unassigned: no combining class, no composition, neither letter nor
/// number nor space. (Found by running every code point through both; lower-casing agrees.)
struct CLIPPreTokenizer: Sendable {
    enum Piece {
        /// A special token written in the text.
        case special(Int32)
        /// The UTF-8 bytes of one word for BPE.
        case word([UInt8])
    }

    /// The special tokens matched in raw text, with their ids.
    let specials: [(scalars: [Unicode.Scalar], id: Int32)]

    static let startOfText = "<|startoftext|>"
    static let endOfText = "<|endoftext|>"

    init(startOfTextID: Int32, endOfTextID: Int32) {
        specials = [
            (Array(Self.startOfText.unicodeScalars), startOfTextID),
            (Array(Self.endOfText.unicodeScalars), endOfTextID),
        ]
    }

    /// Calls `body` with each piece of `text` in order until it returns false.
    func forEachPiece(of text: String, _ body: (Piece) -> Bool) {
        let raw = Array(text.unicodeScalars)
        var segmentStart = 0
        var position = 0
        while position < raw.count {
            guard raw[position] == "<", let special = specialToken(in: raw, at: position) else {
                position += 1
                continue
            }
            guard splitSegment(raw[segmentStart..<position], body), body(.special(special.id)) else { return }
            position += special.scalars.count
            segmentStart = position
        }
        _ = splitSegment(raw[segmentStart...], body)
    }

    private func specialToken(in text: [Unicode.Scalar], at position: Int) -> (scalars: [Unicode.Scalar], id: Int32)? {
        specials.first { text[position...].starts(with: $0.scalars) }
    }

    /// Steps 2–4 on text holding no special token; false if `body` asked to stop.
    private func splitSegment(_ raw: ArraySlice<Unicode.Scalar>, _ body: (Piece) -> Bool) -> Bool {
        let text = Self.normalize(raw)
        var start = 0
        while start < text.count {
            let scalar = text[start]
            if Self.isSpace(scalar) {
                start += 1
                continue
            }
            if scalar == "<", let special = specialToken(in: text, at: start) {
                // Step 4: GPT-2's regex splits "<|name|>" into "<|", "name", "|>".
                let end = start + special.scalars.count
                for range in [start..<(start + 2), (start + 2)..<(end - 2), (end - 2)..<end] {
                    guard body(.word(Self.utf8(text[range]))) else { return false }
                }
                start = end
                continue
            }
            let end = Self.matchEnd(in: text, at: start)
            guard body(.word(Self.utf8(text[start..<end]))) else { return false }
            start = end
        }
        return true
    }

    /// End of the regex match starting at `start` (not white space, not a special token).
    private static func matchEnd(in text: [Unicode.Scalar], at start: Int) -> Int {
        let scalar = text[start]
        if scalar == "'", start + 1 < text.count {
            // 's|'t|'re|'ve|'m|'ll|'d, before the classes below.
            let second = text[start + 1]
            if second == "s" || second == "t" || second == "m" || second == "d" { return start + 2 }
            if start + 2 < text.count {
                let third = text[start + 2]
                if (second == "r" && third == "e") || (second == "v" && third == "e") || (second == "l" && third == "l") {
                    return start + 3
                }
            }
        }
        if isLetter(scalar) {
            var end = start + 1
            while end < text.count, isLetter(text[end]) { end += 1 }
            return end
        }
        if isNumber(scalar) { return start + 1 }
        var end = start + 1
        while end < text.count, !isSpace(text[end]), !isLetter(text[end]), !isNumber(text[end]) { end += 1 }
        return end
    }

    /// Unicode version of the NFC tables of `tokenizers` (crate unicode-normalization-alignments).
    static let normalizationUnicodeVersion: Unicode.Version = (major: 9, minor: 0)
    /// Unicode version of the `\s`, `\p{L}`, `\p{N}` tables of `tokenizers` (Oniguruma).
    static let regexUnicodeVersion: Unicode.Version = (major: 16, minor: 0)

    /// NFC, then per-code-point lower case. White space is left in place: the split drops it.
    static func normalize(_ raw: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        // Every code point below U+0300 is NFC and never composes with another one below U+0300.
        let composed = raw.contains { $0.value >= 0x300 } ? composeCanonically(raw) : Array(raw)
        var lowered: [Unicode.Scalar] = []
        lowered.reserveCapacity(composed.count)
        for scalar in composed {
            if scalar.isASCII {
                let value = scalar.value
                lowered.append(value >= 0x41 && value <= 0x5A ? Unicode.Scalar(value + 0x20)! : scalar)
            } else if scalar.properties.changesWhenLowercased {
                lowered.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            } else {
                lowered.append(scalar)
            }
        }
        return lowered
    }

    /// NFC as of `normalizationUnicodeVersion`. A code point unknown to that version is a starter
    /// that neither composes nor reorders, so the text is composed in runs between such points.
    ///
    /// Uses the standard library's NFC (the one behind `String` comparison): Foundation's
    /// `precomposedStringWithCanonicalMapping` on Linux leaves Hangul LV + T jamo uncomposed.
    private static func composeCanonically(_ raw: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var composed: [Unicode.Scalar] = []
        composed.reserveCapacity(raw.count)
        var runStart = raw.startIndex
        func composeRun(upTo end: Int) {
            guard runStart < end else { return }
            var run = String.UnicodeScalarView()
            run.append(contentsOf: raw[runStart..<end])
            composed.append(contentsOf: String(decoding: String(run)._nfcCodeUnits, as: UTF8.self).unicodeScalars)
        }
        for index in raw.indices where raw[index].value >= 0x300 && !isAssigned(raw[index], by: normalizationUnicodeVersion) {
            composeRun(upTo: index)
            composed.append(raw[index])
            runStart = index + 1
        }
        composeRun(upTo: raw.endIndex)
        return composed
    }

    private static func isAssigned(_ scalar: Unicode.Scalar, by version: Unicode.Version) -> Bool {
        guard let age = scalar.properties.age else { return false }
        return age.major < version.major || (age.major == version.major && age.minor <= version.minor)
    }

    /// Oniguruma's Unicode `\s`.
    static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 { return value == 0x20 || (0x09...0x0D).contains(value) }
        if value == 0x85 { return true }
        switch scalar.properties.generalCategory {
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: return isAssigned(scalar, by: regexUnicodeVersion)
        default: return false
        }
    }

    /// `\p{L}`: Lu, Ll, Lt, Lm, Lo.
    static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 { return (0x61...0x7A).contains(value) || (0x41...0x5A).contains(value) }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return isAssigned(scalar, by: regexUnicodeVersion)
        default: return false
        }
    }

    /// `\p{N}`: Nd, Nl, No.
    static func isNumber(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 { return (0x30...0x39).contains(value) }
        switch scalar.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return isAssigned(scalar, by: regexUnicodeVersion)
        default: return false
        }
    }

    private static func utf8(_ scalars: ArraySlice<Unicode.Scalar>) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(scalars.count)
        for scalar in scalars { UTF8.encode(scalar) { bytes.append($0) } }
        return bytes
    }
}
