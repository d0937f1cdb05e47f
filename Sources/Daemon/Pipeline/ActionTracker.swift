import Foundation
import Video

/// Turns one camera's successive window scores into action events with hysteresis.
///
/// Per label: a window scoring ≥ `start` opens a candidate; the action lasts while each
/// following window scores ≥ `end`, and ends at the first window below `end`. Several labels
/// may be active at once. Minimum duration: `action.start` is held back until the action has
/// lasted `minDurationSeconds` (from the first frame of the window that opened it to the last
/// frame of the current window), and a candidate that drops out sooner is dropped silently —
/// no start, no end. So every `action.start` is followed by exactly one `action.end`, and
/// clients never see flickers. With a minimum of 0 the start comes on the opening window.
/// While active, each window gives an `action.update`.
///
/// Best frames: for each action (from its opening window, confirmed or not) the tracker keeps
/// the last frame of its best-scoring window so far, when windows carry one — one frame per
/// open action, shared with the window, not a copy. `takeBests` hands out the confirmed
/// actions whose best changed, for their snapshots.
///
/// Pure logic: no clocks, no threads; times come from the windows.
public struct ActionTracker: Sendable {
    /// One scored window.
    public struct Observation: Sendable {
        /// Scores of any set of labels (labels left out count as 0).
        public var scores: [DaemonEvent.Score]
        public var startWallClock: Double
        public var endWallClock: Double
        public var startMonotonic: Double
        public var endMonotonic: Double
        public var latencyMs: Double
        /// The window's last frame (captured at `endWallClock`), for snapshots; nil: none kept.
        public var frame: RGBFrame?

        public init(scores: [DaemonEvent.Score], startWallClock: Double, endWallClock: Double,
                    startMonotonic: Double, endMonotonic: Double, latencyMs: Double, frame: RGBFrame? = nil) {
            self.scores = scores
            self.startWallClock = startWallClock
            self.endWallClock = endWallClock
            self.startMonotonic = startMonotonic
            self.endMonotonic = endMonotonic
            self.latencyMs = latencyMs
            self.frame = frame
        }
    }

    /// An action's best frame so far: the last frame of its top-scoring window.
    public struct Best: Sendable {
        public var actionID: String
        public var label: String
        public var score: Float
        /// Capture time of `frame` (the window's end), seconds since 1970.
        public var frameTime: Double
        public var frame: RGBFrame
    }

    private struct Open {
        var id: String?          // nil until confirmed (start emitted)
        var sinceMonotonic: Double
        var best: (score: Float, frameTime: Double, frame: RGBFrame)? = nil
        /// `best` changed since `takeBests` last handed it out.
        var bestChanged = false
    }

    public let camera: String
    public let thresholds: DaemonConfiguration.Thresholds
    /// Labels in the events' `top`.
    public let top: Int
    private let idPrefix: String
    private var counter = 0
    private var open: [String: Open] = [:]
    private var last: Observation?

    /// - Parameter epoch: this daemon run's id; action ids are `<camera>-<epoch fragment>-<n>`.
    public init(camera: String, thresholds: DaemonConfiguration.Thresholds, top: Int = 5, epoch: String) {
        self.camera = camera
        self.thresholds = thresholds
        self.top = top
        idPrefix = "\(camera)-\(epoch.prefix(8))-"
    }

    /// Labels with an action in progress (started and not ended).
    public var activeLabels: [String] { open.filter { $0.value.id != nil }.keys.sorted() }

    /// The events this window causes, ends first, then starts, then updates, each by label.
    public mutating func observe(_ window: Observation) -> [DaemonEvent] {
        last = window
        var score: [String: Float] = [:]
        for s in window.scores { score[s.label] = max(score[s.label] ?? 0, s.score) }
        var ends: [DaemonEvent] = [], starts: [DaemonEvent] = [], updates: [DaemonEvent] = []
        for label in open.keys.sorted() {
            let value = score[label] ?? 0
            if value < thresholds.end {
                if let id = open[label]!.id { ends.append(.actionEnd(action(id, label, value, window))) }
                open[label] = nil
            }
        }
        for (label, value) in score.sorted(by: { $0.key < $1.key }) where open[label] == nil && value >= thresholds.start {
            open[label] = Open(id: nil, sinceMonotonic: window.startMonotonic)
        }
        for label in open.keys.sorted() {
            let value = score[label] ?? 0
            if let frame = window.frame, value > open[label]!.best?.score ?? -.infinity {
                open[label]!.best = (value, window.endWallClock, frame)
                open[label]!.bestChanged = true
            }
            if let id = open[label]!.id {
                updates.append(.actionUpdate(action(id, label, value, window)))
            } else if window.endMonotonic - open[label]!.sinceMonotonic >= thresholds.minDurationSeconds {
                counter += 1
                let id = idPrefix + String(counter)
                open[label]!.id = id
                starts.append(.actionStart(action(id, label, value, window)))
            }
        }
        return ends + starts + updates
    }

    /// The confirmed actions whose best frame changed since the last call, by label.
    public mutating func takeBests() -> [Best] {
        var out: [Best] = []
        for label in open.keys.sorted() {
            guard let id = open[label]!.id, open[label]!.bestChanged, let best = open[label]!.best else { continue }
            open[label]!.bestChanged = false
            out.append(Best(actionID: id, label: label, score: best.score, frameTime: best.frameTime, frame: best.frame))
        }
        return out
    }

    /// Ends every action in progress (camera offline, shutdown), with the last window's times;
    /// candidates not yet confirmed are dropped. The reason travels in `camera.status`.
    public mutating func finish() -> [DaemonEvent] {
        defer { open = [:] }
        guard let window = last else { return [] }
        var score: [String: Float] = [:]
        for s in window.scores { score[s.label] = max(score[s.label] ?? 0, s.score) }
        return open.keys.sorted().compactMap { label in
            open[label]!.id.map { .actionEnd(action($0, label, score[label] ?? 0, window)) }
        }
    }

    private func action(_ id: String, _ label: String, _ score: Float, _ w: Observation) -> DaemonEvent.Action {
        let best = w.scores.sorted { ($0.score, $1.label) > ($1.score, $0.label) }.prefix(top)
        return DaemonEvent.Action(actionID: id, camera: camera, label: label, score: score, top: Array(best),
                                  windowStart: w.startWallClock, windowEnd: w.endWallClock,
                                  windowStartMonotonic: w.startMonotonic, windowEndMonotonic: w.endMonotonic,
                                  latencyMs: w.latencyMs)
    }
}
