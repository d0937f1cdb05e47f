import Foundation

/// The loader feeds the trainer and the evaluation.
extension ClipLoader: ClipBatchSource {
    public var clipCount: Int { entries.count }

    public func nextBatch() -> LabelledClips? {
        next().map { LabelledClips(pixels: $0.pixels, labels: $0.labels, views: $0.views, sources: $0.paths,
                                   endPosition: $0.endPosition) }
    }
}
