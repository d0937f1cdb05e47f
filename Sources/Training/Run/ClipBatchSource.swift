import Foundation

/// Labelled clips, a batch at a time: what the trainer and the evaluation read. The clip
/// loader (decoded videos) and tests (generated pixels) provide it.
public protocol ClipBatchSource: AnyObject {
    /// Clips in one epoch.
    var clipCount: Int { get }
    /// Begins `epoch` at `position` in that epoch's order (0: its start; a checkpoint's
    /// position to resume mid-epoch).
    func start(epoch: Int, position: Int)
    /// The next batch of the epoch, nil at its end.
    func nextBatch() -> LabelledClips?
}

/// One batch of clips.
public struct LabelledClips: Sendable {
    /// (B, V, T, 3, S, S): B clips of V views of T frames, CLIP-normalised.
    public var pixels: [Float]
    public var labels: [Int]
    /// Views per clip (1 in training).
    public var views: Int
    /// Where each clip came from (file paths), for messages.
    public var sources: [String]
    /// The epoch's position after this batch (what a checkpoint records).
    public var endPosition: Int

    public init(pixels: [Float], labels: [Int], views: Int = 1, sources: [String], endPosition: Int) {
        self.pixels = pixels
        self.labels = labels
        self.views = views
        self.sources = sources
        self.endPosition = endPosition
    }

    public var clips: Int { labels.count }
}
