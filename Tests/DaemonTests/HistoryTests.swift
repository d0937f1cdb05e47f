import Foundation
import Testing
@testable import Daemon

/// The event history: the SQLite store on its own, then under an `EventBus`, across a
/// simulated restart (two buses, one database).
@Suite struct HistoryTests {

    /// What the history logged, for checks.
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func callAsFunction(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    static let keepAll = EventStore.Retention(maxAgeSeconds: 1e9, maxBytes: 1 << 30)

    func history(_ path: String, retention: EventStore.Retention = keepAll, retry: Double = 5, log: Log = Log()) -> EventHistory {
        EventHistory(path: path, retention: retention, retryInterval: retry, log: { log($1) })
    }

    /// (epoch, seq) of each line that has a seq.
    func points(_ lines: [[String: Any]]) -> [String] {
        lines.compactMap { l in (l["seq"] as? Int).map { "\(l["epoch"] ?? "?"):\($0)" } }
    }

    func entry(_ seq: UInt64, time: Double, camera: String = "door", label: String? = "waving") -> EventEntry {
        EventEntry(seq: seq, line: "{\"seq\":\(seq)}\n", type: "action.start", camera: camera, label: label,
                   score: 0.9, actionID: "a\(seq)", time: time)
    }

    @Test func storesEveryEventButStatsAndQueriesThem() throws {
        let scratch = try ConfigTests.Scratch()
        let history = history(scratch.database)
        let bus = EventBus(epoch: "run-1", ringCapacity: 8, history: history)
        let sub = bus.subscribe()
        bus.publish(.actionStart(eventAction("a", camera: "door", label: "waving")))
        bus.publish(.stats(.init(cameras: [])))
        bus.publish(.actionStart(eventAction("b", camera: "yard", label: "running")))
        bus.publish(.actionEnd(eventAction("a", camera: "door", label: "waving")))
        bus.publish(.cameraStatus(.init(camera: "yard", status: .offline, reason: "eof")))
        let received = drainLines(sub)
        history.close()

        let store = try EventStore.openReadOnly(path: scratch.database)
        defer { store.close() }
        let all = try store.events(EventStore.Query())
        #expect(all.map(\.seq) == [1, 3, 4, 5], "stats (seq 2) is not kept")
        // Byte for byte what the subscriber got.
        let sent = received.filter { $0["type"] as? String != "stats" }.count
        #expect(sent == all.count)
        #expect(all.allSatisfy { $0.epoch == "run-1" && $0.line.hasSuffix("}\n") })
        #expect(eventJSON(all[0].line)["action_id"] as? String == "a")
        #expect(try store.events(EventStore.Query(cameras: ["yard"])).map(\.seq) == [3, 5])
        #expect(try store.events(EventStore.Query(labels: ["waving"])).map(\.type) == ["action.start", "action.end"])
        #expect(try store.events(EventStore.Query(limit: 2)).map(\.seq) == [4, 5], "the newest N, oldest first")
        let t = all[1].time
        #expect(try store.events(EventStore.Query(since: Date(timeIntervalSince1970: t))).first?.seq == 3)
        #expect(try store.events(EventStore.Query(until: Date(timeIntervalSince1970: t))).last?.seq == 3)
        #expect(history.counters == EventHistory.Counters(stored: 4, writeFailures: 0, pending: 0, lost: 0, writing: true))
    }

    @Test func retentionDeletesOldestFirstByAgeThenSize() throws {
        let scratch = try ConfigTests.Scratch()
        let (store, _) = try EventStore.open(path: scratch.database)
        defer { store.close() }
        try store.beginRun(epoch: "old", started: Date(timeIntervalSince1970: 1000))
        let now = Date(timeIntervalSince1970: 1_000_000)
        try store.insert((1...50).map { entry($0, time: 1000 + Double($0)) }, epoch: "old")
        try store.insert((51...100).map { entry($0, time: now.timeIntervalSince1970 - 10) }, epoch: "old")
        #expect(try store.applyRetention(.init(maxAgeSeconds: 3600, maxBytes: 1 << 30), now: now) == 50)
        #expect(try store.events(EventStore.Query(limit: nil)).map(\.seq) == Array(51...100))
        #expect(try store.events(after: ResumePoint(epoch: "old", seq: 10), limit: 1000) == nil,
                "a point in what was deleted gets resync")
        #expect(try store.events(after: ResumePoint(epoch: "old", seq: 60), limit: 1000)?.events.map(\.seq) == Array(61...100))

        // Size: fill with large lines, cap well below, the newest survive.
        let big = String(repeating: "x", count: 2000)
        try store.insert((UInt64(101)...600).map { var e = entry($0, time: now.timeIntervalSince1970); e.line = big; return e }, epoch: "old")
        let cap: Int64 = 200 * 1024
        #expect(try store.applyRetention(.init(maxAgeSeconds: 3600, maxBytes: cap), now: now) > 0)
        #expect(try store.usedBytes() <= cap)
        let left = try store.events(EventStore.Query()).map(\.seq)
        #expect(left.last == 600 && left == Array(left.first!...600), "a contiguous newest tail: \(left.first!)…")
    }

    @Test func corruptFileIsMovedAsideAndAFreshOneStarted() throws {
        let scratch = try ConfigTests.Scratch()
        let garbage = Data(repeating: 0x5A, count: 8192)
        try garbage.write(to: URL(fileURLWithPath: scratch.database))
        let log = Log()
        let history = history(scratch.database, log: log)
        let bus = EventBus(epoch: "fresh", ringCapacity: 4, history: history)
        bus.publish(.actionStart(eventAction("a")))
        history.close()
        let aside = try FileManager.default.contentsOfDirectory(atPath: scratch.dir.path).filter { $0.hasPrefix("events.sqlite.corrupt-") }
        #expect(aside.count == 1, "\(aside)")
        #expect(try Data(contentsOf: scratch.dir.appendingPathComponent(aside[0])) == garbage, "the user's file is kept as it was")
        let said = log.all.joined(separator: "\n")
        #expect(said.contains(scratch.database) && said.contains("moved it to") && said.contains(aside[0]), "\(said)")
        #expect(try EventStore.openReadOnly(path: scratch.database).count() == 1)
    }

    @Test func sinceFromAnEarlierRunReplaysExactlyTheMissedEventsThenLiveOnes() throws {
        let scratch = try ConfigTests.Scratch()
        // Run 1: a subscriber reads up to seq 4, then the daemon goes on to 10 and stops.
        let first = history(scratch.database)
        let bus1 = EventBus(epoch: "run-1", ringCapacity: 64, history: first)
        let early = bus1.subscribe()
        for i in 1...4 { bus1.publish(.actionUpdate(eventAction("a\(i)"))) }
        let seen = drainLines(early)
        early.cancel()
        for i in 5...10 {
            if i == 7 { bus1.publish(.stats(.init(cameras: []))) } else { bus1.publish(.actionUpdate(eventAction("a\(i)"))) }
        }
        first.close()

        // Run 2 on the same database: two events before the subscriber comes back.
        let second = history(scratch.database)
        let bus2 = EventBus(epoch: "run-2", ringCapacity: 64, history: second)
        bus2.publish(.actionStart(eventAction("b1")))
        bus2.publish(.actionEnd(eventAction("b1")))
        let last = try #require(seen.last)
        let resumed = bus2.subscribe(since: ResumePoint(epoch: last["epoch"] as! String, seq: UInt64(last["seq"] as! Int)))
        bus2.publish(.actionStart(eventAction("b2")))
        #expect(points(drainLines(resumed)) == ["run-1:5", "run-1:6", "run-1:8", "run-1:9", "run-1:10",
                                                "run-2:1", "run-2:2", "run-2:3"])

        // Within run 2, older than its ring: from the database too; a run nobody knows: resync.
        let bus3 = EventBus(epoch: "run-3", ringCapacity: 2, history: second)
        for i in 1...5 { bus3.publish(.actionUpdate(eventAction("c\(i)"))) }
        let inRun = bus3.subscribe(since: ResumePoint(epoch: "run-3", seq: 1))
        #expect(points(drainLines(inRun)) == ["run-3:2", "run-3:3", "run-3:4", "run-3:5"])
        let unknown = bus3.subscribe(since: ResumePoint(epoch: "run-0", seq: 3))
        #expect(drainLines(unknown).first?["type"] as? String == "resync")
        second.close()
    }

    /// Replay from the database while another thread publishes: the bulk is read without the
    /// bus lock, the rest under it, so nothing published meanwhile is missed or doubled.
    @Test func sinceFromHistoryConcurrentWithPublicationHasNoGapOrDuplicate() throws {
        let scratch = try ConfigTests.Scratch()
        let history = history(scratch.database)
        let earlier = EventBus(epoch: "earlier", ringCapacity: 16, history: history)
        for i in 1...200 { earlier.publish(.actionUpdate(eventAction("a\(i)"))) }
        let bus = EventBus(epoch: "now", ringCapacity: 16, history: history)
        let done = publishConcurrently(bus, count: 3_000, returningAt: 500)
        let sub = bus.subscribe(since: ResumePoint(epoch: "earlier", seq: 100), queueCapacity: 10_000)
        done.wait()
        #expect(points(drainLines(sub)) == (101...200).map { "earlier:\($0)" } + (1...3_000).map { "now:\($0)" })
        history.close()
    }

    @Test func aFailingDatabaseNeverStopsLiveEventsAndCatchesUpLater() throws {
        let scratch = try ConfigTests.Scratch()
        let missing = scratch.dir.appendingPathComponent("not-yet")
        let log = Log()
        let history = history(missing.appendingPathComponent(EventStore.fileName).path, retry: 0, log: log)
        let bus = EventBus(epoch: "run", ringCapacity: 8, history: history)
        let sub = bus.subscribe()
        for i in 1...3 { bus.publish(.actionUpdate(eventAction("a\(i)"))) }
        #expect(points(drainLines(sub)) == ["run:1", "run:2", "run:3"], "live events go on")
        var counters = history.counters
        #expect(!counters.writing && counters.pending == 3 && counters.writeFailures >= 3 && counters.stored == 0)
        #expect(log.all.count == 1, "logged once per change, not per event: \(log.all)")
        #expect(log.all[0].contains(missing.path), "the error names the file: \(log.all[0])")

        try FileManager.default.createDirectory(at: missing, withIntermediateDirectories: true)
        bus.retryHistory()
        counters = history.counters
        #expect(counters.writing && counters.pending == 0 && counters.stored == 3)
        #expect(log.all.last?.contains("writing") == true, "\(log.all)")
        let again = bus.subscribe(since: ResumePoint(epoch: "earlier", seq: 1))
        #expect(drainLines(again).first?["type"] as? String == "resync")
        history.close()
        #expect(try EventStore.openReadOnly(path: missing.appendingPathComponent(EventStore.fileName).path).count() == 3)
    }

    @Test func timesParseAsAgesOrISO8601() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(HistoryReport.parseTime("2h", now: now) == now.addingTimeInterval(-7200))
        #expect(HistoryReport.parseTime("30m", now: now) == now.addingTimeInterval(-1800))
        #expect(HistoryReport.parseTime("7d", now: now) == now.addingTimeInterval(-7 * 86_400))
        #expect(HistoryReport.parseTime("2026-12-07T10:00:00Z") == Date(timeIntervalSince1970: 1_796_637_600))
        #expect(HistoryReport.parseTime("2026-12-07T10:00:00.500Z") == Date(timeIntervalSince1970: 1_796_637_600.5))
        #expect(HistoryReport.parseTime("2026-12-07") == Date(timeIntervalSince1970: 1_796_601_600))
        for bad in ["", "h", "-2h", "yesterday", "2026-13-01"] { #expect(HistoryReport.parseTime(bad) == nil, "\(bad)") }
    }
}

extension ConfigTests.Scratch {
    /// Where a test's history database goes.
    var database: String { dir.appendingPathComponent(EventStore.fileName).path }
}
