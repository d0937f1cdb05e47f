import Foundation
import Testing
import SafeTensors

/// Tests/Fixtures, found from this file's location.
let fixturesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

func fixturePath(_ relative: String) -> String {
    fixturesDirectory.appendingPathComponent(relative).path
}

/// Compares `actual` with `expected` (the oracle), failing with the label, the index of the
/// worst element and both values when max |a − e| > absTol or cosine < minCosine.
func expectClose(_ actual: [Float], _ expected: [Float], absTol: Float, minCosine: Double = 0.99999,
                 _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual.count == expected.count else {
        Issue.record("\(label): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var worst = 0, worstDiff: Float = 0
    var dot = 0.0, na = 0.0, ne = 0.0
    for i in 0..<actual.count {
        let diff = abs(actual[i] - expected[i])
        if !(diff <= worstDiff) { worst = i; worstDiff = diff }
        dot += Double(actual[i]) * Double(expected[i])
        na += Double(actual[i]) * Double(actual[i])
        ne += Double(expected[i]) * Double(expected[i])
    }
    let cosine = dot / max((na * ne).squareRoot(), 1e-30)
    #expect(worstDiff <= absTol && cosine >= minCosine,
            "\(label): max abs diff \(worstDiff) at [\(worst)] (got \(actual[worst]), expected \(expected[worst])), tolerance \(absTol); cosine \(cosine), minimum \(minCosine)",
            sourceLocation: sourceLocation)
}

/// A scratch directory removed when the value is released.
final class TemporaryDirectory {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("m2clip-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}
