import Foundation

/// CLIP's byte-level BPE tokenizer, giving the ids of `transformers.CLIPTokenizer`.
///
/// ```swift
/// let tokenizer = try CLIPTokenizer.bundled()
/// let ids = tokenizer.encode("A video of abseiling.")
/// // [49406, 320, 1455, 539, 596, 567, 3299, 269, 49407]
/// ```
///
/// Text goes through `CLIPPreTokenizer` (special tokens, NFC, white space, lower case, CLIP's split
/// regex), then each piece through byte-level BPE with `</w>` closing a word. The reference is
/// `CLIPTokenizer` of transformers 5.x (built on `tokenizers`): no `ftfy` repair, no HTML
/// unescaping, control characters kept as bytes, CJK runs kept whole (unlike the slow
/// tokenizer of transformers 4.x without `ftfy`, which dropped the former and split the latter).
///
/// Copies share one cache of encoded words; the tokenizer can be used from many threads.
public struct CLIPTokenizer: Sendable {
    /// Id of `<|startoftext|>` in OpenAI's CLIP vocabulary; `startOfTextID` is the loaded one.
    public static let startOfText: Int32 = 49406
    /// Id of `<|endoftext|>` in OpenAI's CLIP vocabulary; `endOfTextID` is the loaded one.
    public static let endOfText: Int32 = 49407

    /// Id of `<|startoftext|>` in the loaded vocabulary: the first id of every encoding.
    public let startOfTextID: Int32
    /// Id of `<|endoftext|>` in the loaded vocabulary: the last id of every encoding, and the
    /// id of bytes the vocabulary lacks (the unknown token).
    public let endOfTextID: Int32
    /// Number of tokens in vocab.json (49408 for CLIP).
    public let vocabularySize: Int

    private let tokens: [Int32: String]  // token text by id, for `tokenize`
    private let preTokenizer: CLIPPreTokenizer
    private let encoder: BytePairEncoder
    private let cache = WordCache()

    /// Loads a vocabulary (`vocab.json`: token → id) and its merges (`merges.txt`: one pair a
    /// line, in rank order), and checks that every merge's symbols and result are tokens.
    ///
    /// - Throws: `TokenizerError` naming the file (and line) at fault.
    public init(vocabularyFile: String, mergesFile: String) throws {
        try self.init(vocabulary: try TokenizerFiles.readVocabulary(path: vocabularyFile),
                      merges: try TokenizerFiles.readMerges(path: mergesFile),
                      vocabularySource: vocabularyFile, mergesSource: mergesFile)
    }

    /// The same from the files' contents, e.g. as stored inside a model file; `source` names
    /// where they came from in errors.
    public init(vocabularyJSON: [UInt8], merges: [UInt8], source: String) throws {
        let vocabularySource = "\(source) vocab.json", mergesSource = "\(source) merges.txt"
        try self.init(vocabulary: try TokenizerFiles.readVocabulary(bytes: vocabularyJSON, path: vocabularySource),
                      merges: try TokenizerFiles.readMerges(bytes: merges, path: mergesSource),
                      vocabularySource: vocabularySource, mergesSource: mergesSource)
    }

    private init(vocabulary: [[UInt8]: Int32], merges mergeLines: [TokenizerFiles.MergeLine],
                 vocabularySource vocabularyFile: String, mergesSource mergesFile: String) throws {
        func specialID(_ token: String) throws(TokenizerError) -> Int32 {
            guard let id = vocabulary[Array(token.utf8)] else {
                throw TokenizerError(file: vocabularyFile, message: "no \(token) token in the vocabulary")
            }
            return id
        }
        startOfTextID = try specialID(CLIPPreTokenizer.startOfText)
        endOfTextID = try specialID(CLIPPreTokenizer.endOfText)
        vocabularySize = vocabulary.count

        var tokens: [Int32: String] = [:]
        tokens.reserveCapacity(vocabulary.count)
        for (token, id) in vocabulary { tokens[id] = String(decoding: token, as: UTF8.self) }
        self.tokens = tokens

        preTokenizer = CLIPPreTokenizer(startOfTextID: startOfTextID, endOfTextID: endOfTextID)
        encoder = try BytePairEncoder(
            vocabulary: vocabulary, merges: mergeLines, unknownID: endOfTextID, mergesPath: mergesFile)
    }

    /// Loads `vocab.json` and `merges.txt` from a directory, e.g. a Hugging Face CLIP checkpoint.
    public init(directory: String) throws {
        let url = URL(fileURLWithPath: directory, isDirectory: true)
        try self.init(
            vocabularyFile: url.appendingPathComponent("vocab.json").path,
            mergesFile: url.appendingPathComponent("merges.txt").path)
    }

    /// The CLIP tokenizer shipped with this package, loaded once per process.
    public static func bundled() throws -> CLIPTokenizer {
        try bundledTokenizer.get()
    }

    private static let bundledTokenizer: Result<CLIPTokenizer, TokenizerError> = {
        guard let url = BundledResources.tokenizerDirectory else {
            return .failure(TokenizerError(file: "clip-tokenizer", message: "resource missing from the M2Model bundle"))
        }
        do {
            return .success(try CLIPTokenizer(directory: url.path))
        } catch let error as TokenizerError {
            return .failure(error)
        } catch {
            return .failure(TokenizerError(file: url.path, message: "\(error)"))
        }
    }()

    /// `[startOfTextID] + ids of text + [endOfTextID]`, cut to at most `contextLength` ids with
    /// `endOfTextID` kept last (`transformers`' `truncation=True, max_length=contextLength`).
    /// Not padded. Pass `Int.max` for no limit.
    ///
    /// - Precondition: `contextLength >= 2`.
    public func encode(_ text: String, contextLength: Int = 77) -> [Int32] {
        precondition(contextLength >= 2, "contextLength \(contextLength) leaves no room for <|startoftext|> and <|endoftext|>")
        let limit = contextLength - 1  // ids before endOfTextID
        var ids = [startOfTextID]
        forEachID(of: text) { pieceIDs in
            ids.append(contentsOf: pieceIDs.prefix(limit - ids.count))
            return ids.count < limit
        }
        ids.append(endOfTextID)
        return ids
    }

    /// The BPE tokens of `text`, without `<|startoftext|>` and `<|endoftext|>` around them and
    /// untruncated, e.g. `["a</w>", "video</w>", "of</w>"]`.
    public func tokenize(_ text: String) -> [String] {
        var result: [String] = []
        forEachID(of: text) { pieceIDs in
            result += pieceIDs.map { tokens[$0] ?? "" }
            return true
        }
        return result
    }

    /// Calls `body` with the ids of each piece of `text` until it returns false.
    private func forEachID(of text: String, _ body: ([Int32]) -> Bool) {
        var pieceIDs: [Int32] = []
        preTokenizer.forEachPiece(of: text) { piece in
            switch piece {
            case .special(let id):
                return body([id])
            case .word(let word):
                if let cached = cache.lookup(word) { return body(cached) }
                pieceIDs.removeAll(keepingCapacity: true)
                encoder.encode(word: word, into: &pieceIDs)
                cache.store(word, pieceIDs)
                return body(pieceIDs)
            }
        }
    }
}
