import Foundation

/// `metrics.jsonl`: one JSON object a line (steps and epochs), flushed line by line so a
/// killed run keeps every line it logged.
final class MetricsLog {
    let path: String
    private let handle: FileHandle
    private let encoder: JSONEncoder

    init(path: String, append: Bool) throws {
        self.path = path
        if !append || !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw TrainingError("cannot create \(path)")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw TrainingError("cannot open \(path) for writing") }
        handle.seekToEndOfFile()
        self.handle = handle
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf",
                                                                       nan: "nan")
    }

    deinit { try? handle.close() }

    func append<T: Encodable>(_ record: T) throws {
        var line = try encoder.encode(record)
        line.append(UInt8(ascii: "\n"))
        do {
            try handle.write(contentsOf: line)
        } catch {
            throw TrainingError("cannot write \(path): \(error.localizedDescription)")
        }
    }
}

/// `curves.svg`: the loss terms per step and the validation top-1 per epoch, from
/// `metrics.jsonl` (a picture a person opens in a browser).
enum TrainingCurves {
    struct Line: Decodable {
        var type: String
        var step: Int
        var losses: LossTerms?
        var validation: Validation?
        struct Validation: Decodable { var top1: Double }
    }

    static func write(metrics: String, to path: String) throws {
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        let lines = text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
        let steps = lines.filter { $0.type == "step" }
        let epochs = lines.filter { $0.type == "epoch" && $0.validation != nil }
        guard let lastStep = steps.map(\.step).max(), lastStep > 0 else { return }
        let width = 720.0, height = 420.0, left = 60.0, right = 60.0, top = 30.0, bottom = 40.0
        let plotW = width - left - right, plotH = height - top - bottom
        let series: [(String, String, KeyPath<LossTerms, Float>)] = [
            ("total", "#000000", \.total), ("contrastive v2t", "#1f77b4", \.contrastiveV2T),
            ("contrastive t2v", "#17becf", \.contrastiveT2V), ("cmc", "#2ca02c", \.cmc), ("vc", "#d62728", \.vc),
            ("mlm", "#9467bd", \.mlm),
        ]
        let maxLoss = max(1e-6, steps.compactMap { $0.losses }.flatMap { l in series.map { Double(l[keyPath: $0.2]) } }
            .filter(\.isFinite).max() ?? 1)
        func x(_ step: Int) -> Double { left + plotW * Double(step) / Double(lastStep) }
        func y(_ loss: Double) -> Double { top + plotH * (1 - min(loss, maxLoss) / maxLoss) }
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="18" font-size="13">m2clip train: loss terms per step (left axis), validation top-1 per epoch (right axis, dashed)</text>
        <line x1="\(left)" y1="\(top + plotH)" x2="\(left + plotW)" y2="\(top + plotH)" stroke="#888"/>
        <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(top + plotH)" stroke="#888"/>
        <line x1="\(left + plotW)" y1="\(top)" x2="\(left + plotW)" y2="\(top + plotH)" stroke="#888"/>
        <text x="\(left - 5)" y="\(top + 4)" text-anchor="end">\(String(format: "%.3g", maxLoss))</text>
        <text x="\(left - 5)" y="\(top + plotH)" text-anchor="end">0</text>
        <text x="\(left + plotW + 5)" y="\(top + 4)">100 %</text>
        <text x="\(left + plotW + 5)" y="\(top + plotH)">0 %</text>
        <text x="\(left + plotW / 2)" y="\(height - 10)" text-anchor="middle">step (last \(lastStep))</text>

        """
        for (i, (name, color, key)) in series.enumerated() {
            let points = steps.compactMap { s -> String? in
                guard let v = s.losses.map({ Double($0[keyPath: key]) }), v.isFinite else { return nil }
                return String(format: "%.1f,%.1f", x(s.step), y(v))
            }
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.2\" points=\"\(points.joined(separator: " "))\"/>\n"
            svg += "<text x=\"\(left + 8 + Double(i) * 105)\" y=\"\(top + 14)\" fill=\"\(color)\">\(name)</text>\n"
        }
        if !epochs.isEmpty {
            let points = epochs.map { String(format: "%.1f,%.1f", x($0.step), top + plotH * (1 - $0.validation!.top1)) }
            svg += "<polyline fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"2\" stroke-dasharray=\"6 3\" points=\"\(points.joined(separator: " "))\"/>\n"
            svg += "<text x=\"\(left + 8)\" y=\"\(top + 28)\" fill=\"#ff7f0e\">validation top-1</text>\n"
        }
        svg += "</svg>\n"
        try svg.write(toFile: path, atomically: true, encoding: .utf8)
    }
}
