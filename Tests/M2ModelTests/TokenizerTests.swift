import Foundation
import Testing

@testable import M2Model

/// The CLIP tokenizer against `transformers.CLIPTokenizer`: Tests/Fixtures/tokenizer/ids.json is
/// written by scripts/fixtures/make_tokenizer_fixture.py.
@Suite struct TokenizerTests {
    private struct FixtureCase: Decodable {
        let text: String
        let ids: [Int32]
    }

    private static let testsDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
    private static let fixtureURL = testsDirectory.appendingPathComponent("Fixtures/tokenizer/ids.json")
    private static let resourceDirectory = testsDirectory.deletingLastPathComponent()
        .appendingPathComponent("Resources/CLIPVocabulary/clip-tokenizer")

    @Test func everyFixtureCaseMatchesTransformers() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let cases = try JSONDecoder().decode([FixtureCase].self, from: Data(contentsOf: Self.fixtureURL))
        #expect(cases.count > 2500, "fixture \(Self.fixtureURL.path) has only \(cases.count) cases")

        var mismatches = 0
        for fixture in cases {
            let actual = tokenizer.encode(fixture.text)
            guard actual != fixture.ids else { continue }
            mismatches += 1
            if mismatches == 1 {
                Issue.record("""
                    first mismatch: text \(fixture.text.debugDescription) \
                    (scalars \(fixture.text.unicodeScalars.map { String($0.value, radix: 16) })) \
                    expected \(fixture.ids) actual \(actual)
                    """)
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(cases.count) fixture cases differ")
    }

    @Test func specialTokensAndSizeComeFromTheVocabulary() throws {
        let tokenizer = try CLIPTokenizer(directory: Self.resourceDirectory.path)
        #expect(tokenizer.startOfTextID == CLIPTokenizer.startOfText)
        #expect(tokenizer.endOfTextID == CLIPTokenizer.endOfText)
        #expect(tokenizer.vocabularySize == 49408)
        #expect(tokenizer.encode("") == [49406, 49407])
    }

    @Test func tokenizeShowsBPETokensWithoutSpecialTokensAround() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        #expect(tokenizer.tokenize("A video of abseiling.") == ["a</w>", "video</w>", "of</w>", "ab", "se", "iling</w>", ".</w>"])
        #expect(tokenizer.tokenize("DON'T <|endoftext|>stop") == ["don</w>", "'t</w>", "<|endoftext|>", "stop</w>"])
        #expect(tokenizer.tokenize(" \t\n") == [])
    }

    @Test func truncationKeepsEndOfTextLast() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let text = String(repeating: "a photo of a dog, ", count: 20)
        let full = tokenizer.encode(text, contextLength: .max)
        #expect(full.count == 2 + 20 * 6)
        for contextLength in [2, 3, 10, 77, 121, 122, 200] {
            let expected = Array(full.dropLast().prefix(contextLength - 1)) + [tokenizer.endOfTextID]
            #expect(tokenizer.encode(text, contextLength: contextLength) == expected, "contextLength \(contextLength)")
        }
    }

    @Test func concurrentEncodingsAgree() async throws {
        // Two separate loads, so that the concurrent encodings start from an empty word cache.
        let reference = try CLIPTokenizer(directory: Self.resourceDirectory.path)
        let tokenizer = try CLIPTokenizer(directory: Self.resourceDirectory.path)
        let texts = (0..<64).map { "clip number \($0) of someone juggling \(String(repeating: "balls ", count: $0 % 7))" }
        let expected = texts.map { reference.encode($0) }
        let results = await withTaskGroup(of: (Int, [Int32]).self) { group in
            for (index, text) in texts.enumerated() { group.addTask { (index, tokenizer.encode(text)) } }
            var results = [[Int32]](repeating: [], count: texts.count)
            for await (index, ids) in group { results[index] = ids }
            return results
        }
        #expect(results == expected)
    }

    // MARK: Errors name the file

    @Test func missingVocabularyNamesTheFile() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: directory.path) }
        #expect(error?.file == directory.appendingPathComponent("vocab.json").path)
        #expect(error?.description.contains("vocab.json") == true)
        #expect(error?.description.contains("file not found") == true)
    }

    @Test func missingMergesNamesTheFile() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.write(Self.tinyVocabulary, to: directory, "vocab.json")
        let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: directory.path) }
        #expect(error?.description.contains("merges.txt") == true)
    }

    @Test func invalidJSONNamesTheFileAndLine() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.write("{\n\"a\": 1,\n\"b\" 2\n}\n", to: directory, "vocab.json")
        try Self.write("#version: 0.2\n", to: directory, "merges.txt")
        let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: directory.path) }
        #expect(error?.line == 3)
        #expect(error?.description.hasPrefix("vocab.json line 3") == true, "\(String(describing: error))")
        #expect(error?.description.contains("expected ':'") == true, "\(String(describing: error))")

        for (json, problem) in [
            ("[1, 2]", "expected '{'"),
            ("{\"a\": 1", "expected ',' or '}'"),
            ("{\"a\": \"x\"}", "expected an integer id"),
            ("{\"a\": 1.5}", "is not an integer"),
            ("{\"a\": -1}", "is not an integer"),
            ("{\"a\": 01}", "is not an integer"),
            ("{\"a\": 1} x", "unexpected text"),
            ("{\"\\ud800\": 1}", "unpaired surrogate"),
            ("{\"a\\q\": 1}", "invalid escape"),
        ] {
            try Self.write(json, to: directory, "vocab.json")
            let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: directory.path) }
            #expect(error?.description.contains("vocab.json") == true)
            #expect(error?.description.contains(problem) == true, "\(json): \(String(describing: error))")
        }
    }

    @Test func malformedMergesLineNamesTheFileAndLine() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.write(Self.tinyVocabulary, to: directory, "vocab.json")
        for (merges, line) in [("#version: 0.2\na b\nab c d\n", 3), ("a b\n\na b</w>\n", 2), ("a  b\n", 1), ("ab\n", 1)] {
            try Self.write(merges, to: directory, "merges.txt")
            let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: directory.path) }
            #expect(error?.line == line, "\(merges.debugDescription): \(String(describing: error))")
            #expect(error?.description.hasPrefix("merges.txt line \(line)") == true, "\(String(describing: error))")
            #expect(error?.description.contains("two symbols") == true)
        }
    }

    @Test func mergeOutsideTheVocabularyNamesTheFileAndLine() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.write(Self.tinyVocabulary, to: directory, "vocab.json")
        try Self.write("#version: 0.2\na b\nb a\n", to: directory, "merges.txt")
        var error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: directory.path) }
        #expect(error?.line == 3)
        #expect(error?.description.contains("result \"ba\" is not in the vocabulary") == true, "\(String(describing: error))")

        try Self.write("a q\n", to: directory, "merges.txt")
        error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: directory.path) }
        #expect(error?.description.contains("symbol \"q\" is not in the vocabulary") == true, "\(String(describing: error))")
    }

    @Test func vocabularyWithoutSpecialTokensIsRefused() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.write("{\"a\": 0}", to: directory, "vocab.json")
        try Self.write("", to: directory, "merges.txt")
        let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer(directory: directory.path) }
        #expect(error?.description.contains("vocab.json") == true)
        #expect(error?.description.contains("<|startoftext|>") == true)
    }

    @Test func tinyVocabularyEncodes() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.write(Self.tinyVocabulary, to: directory, "vocab.json")
        try Self.write("#version: 0.2\na b</w>\r\na b\n", to: directory, "merges.txt")
        let tokenizer = try CLIPTokenizer(directory: directory.path)
        #expect(tokenizer.vocabularySize == 9)
        // Bytes outside the vocabulary become the unknown token, <|endoftext|>.
        #expect(tokenizer.encode("AB ab abz") == [7, 5, 5, 4, 8, 8])
        #expect(tokenizer.tokenize("ab") == ["ab</w>"])
    }

    // MARK: Helpers

    private static let tinyVocabulary = """
        {"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab": 4, "ab</w>": 5,
         "<|startoftext|>": 7, "<|endoftext|>": 8, "\\u00e9": 6}
        """

    private static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    private static func write(_ text: String, to directory: URL, _ name: String) throws {
        try Data(text.utf8).write(to: directory.appendingPathComponent(name))
    }
}
