import Foundation
import Testing
@testable import FuzzTargets

/// The fuzz targets on their committed corpora (Fuzz/Corpus) and on every input that once
/// crashed one (Fuzz/Regressions/<target>/, each named after what it found), in-process: a
/// parser that traps on any of them fails the suite. scripts/fuzz.sh runs the same targets
/// under libFuzzer and AddressSanitizer.
@Suite struct FuzzCorpusTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz").path

    static func inputs(_ folder: String, _ target: FuzzTarget) -> [String] {
        let directory = root + "/" + folder + "/" + target.rawValue
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory + "/" + $0 }
    }

    @Test(arguments: FuzzTarget.allCases)
    func corpusAndRegressionsRunWithoutATrap(target: FuzzTarget) throws {
        let seeds = Self.inputs("Corpus", target)
        #expect(!seeds.isEmpty, "Fuzz/Corpus/\(target.rawValue) has seeds")
        for path in seeds + Self.inputs("Regressions", target) {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            data.withUnsafeBytes { target.run($0) }
            // every prefix of a seed too: truncation is the commonest damage
            for cut in stride(from: 0, to: data.count, by: max(1, data.count / 16)) {
                data.prefix(cut).withUnsafeBytes { target.run($0) }
            }
        }
    }

    /// Seeds that are valid inputs reach the parsers' deep paths; a seed every parser refuses
    /// would fuzz only the first check.
    @Test func seedsAreValidInputs() throws {
        func seed(_ target: FuzzTarget, _ name: String) throws -> Data {
            try Data(contentsOf: URL(fileURLWithPath: Self.root + "/Corpus/\(target.rawValue)/" + name))
        }
        #expect(FuzzTarget.accepts(.safetensors, try seed(.safetensors, "mixed.safetensors")))
        #expect(FuzzTarget.accepts(.batch, try seed(.batch, "tiny-b2-t2.safetensors")))
        #expect(FuzzTarget.accepts(.tokenizer, try seed(.tokenizer, "small.bin")))
        #expect(FuzzTarget.accepts(.modelMetadata, try seed(.modelMetadata, "configuration.json")))
        #expect(FuzzTarget.accepts(.hfConfig, try seed(.hfConfig, "tiny.json")))
        #expect(FuzzTarget.accepts(.daemonConfig, try seed(.daemonConfig, "minimal.yaml")))
        #expect(FuzzTarget.accepts(.clipList, try seed(.clipList, "mmaction.txt")))
        for name in ["yuyv-16x8.bin", "nv12-16x8.bin", "mjpeg-16x8.bin"] {
            #expect(FuzzTarget.accepts(.v4l2Frame, try seed(.v4l2Frame, name)), "\(name)")
        }
        #expect(!FuzzTarget.accepts(.safetensors, Data("not a file".utf8)))
    }
}
