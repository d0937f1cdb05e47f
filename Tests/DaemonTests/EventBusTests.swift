import Foundation
import Testing
@testable import Daemon

/// Events for tests: action `id` on `camera` with `label` and `score`.
func eventAction(_ id: String, camera: String = "door", label: String = "waving", score: Float = 0.9) -> DaemonEvent.Action {
    DaemonEvent.Action(actionID: id, camera: camera, label: label, score: score,
                       top: [DaemonEvent.Score(label: label, score: score)],
                       windowStart: 1_700_000_000, windowEnd: 1_700_000_002,
                       windowStartMonotonic: 10, windowEndMonotonic: 12, latencyMs: 35)
}

func eventJSON(_ line: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
}

/// Publishes `count` action starts on another thread and returns once `bus.latestSeq` has
/// reached `seq`; wait on the semaphore for the rest.
func publishConcurrently(_ bus: EventBus, count: Int, returningAt seq: UInt64) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    Thread {
        for i in 0..<count { bus.publish(.actionStart(eventAction("a\(i)"))) }
        done.signal()
    }.start()
    while bus.latestSeq < seq { usleep(100) }
    return done
}

/// Every line a subscription has ready now.
func drainLines(_ sub: Subscription) -> [[String: Any]] {
    var out: [[String: Any]] = []
    while case .line(let l) = sub.next(timeout: 0) { out.append(eventJSON(l)) }
    return out
}

@Suite struct EventBusTests {
    @Test func linesCarryEnvelopeAndFlattenedPayload() throws {
        let bus = EventBus(epoch: "run-1", ringCapacity: 8)
        let sub = bus.subscribe()
        #expect(bus.publish(.actionStart(eventAction("a1"))) == 1)
        #expect(bus.publish(.cameraStatus(.init(camera: "door", status: .online, reason: nil))) == 2)
        let lines = drainLines(sub)
        #expect(lines.count == 2)
        let first = lines[0]
        #expect(first["v"] as? Int == 1)
        #expect(first["seq"] as? Int == 1)
        #expect(first["epoch"] as? String == "run-1")
        #expect(first["type"] as? String == "action.start")
        #expect(first["action_id"] as? String == "a1")
        #expect(first["camera"] as? String == "door")
        #expect((first["ts"] as? Double ?? 0) > 1_600_000_000)
        #expect(lines[1]["status"] as? String == "online")
        #expect(lines[1]["seq"] as? Int == 2)
    }

    @Test func filtersByCameraLabelAndScore() {
        let bus = EventBus(epoch: "e", ringCapacity: 8)
        let sub = bus.subscribe(filter: EventFilter(cameras: ["door"], labels: ["waving"], minScore: 0.5))
        bus.publish(.actionStart(eventAction("a", camera: "yard")))                 // other camera
        bus.publish(.actionStart(eventAction("b", label: "running")))               // other label
        bus.publish(.actionStart(eventAction("c", score: 0.2)))                      // too low
        bus.publish(.actionStart(eventAction("d", score: 0.8)))                      // passes
        bus.publish(.actionUpdate(eventAction("d", score: 0.3)))                     // admitted action: kept
        bus.publish(.actionEnd(eventAction("d", score: 0.1)))                        // kept
        bus.publish(.cameraStatus(.init(camera: "yard", status: .offline, reason: "eof")))
        bus.publish(.cameraStatus(.init(camera: "door", status: .stalled, reason: nil)))
        bus.publish(.stats(.init(cameras: [])))
        let types = drainLines(sub).map { "\($0["type"]!):\($0["seq"]!)" }
        #expect(types == ["action.start:4", "action.update:5", "action.end:6", "camera.status:8", "stats:9"])
    }

    @Test func fullQueueDropsUpdatesFirstAndReportsThem() {
        let bus = EventBus(epoch: "e", ringCapacity: 64)
        let sub = bus.subscribe(queueCapacity: 4)
        bus.publish(.actionStart(eventAction("a")))
        for _ in 0..<5 { bus.publish(.actionUpdate(eventAction("a"))) }
        bus.publish(.actionEnd(eventAction("a")))
        let lines = drainLines(sub)
        #expect(lines.first?["type"] as? String == "dropped")
        #expect(lines.first?["count"] as? Int == 3)
        #expect(lines.dropFirst().map { $0["type"] as? String } == ["action.start", "action.update", "action.update", "action.end"])
        #expect(lines.dropFirst().map { $0["seq"] as? Int } == [1, 5, 6, 7])
        #expect(sub.closeReason == nil)
    }

    @Test func fullQueueWithoutUpdatesDisconnects() {
        let bus = EventBus(epoch: "e", ringCapacity: 64)
        let sub = bus.subscribe(queueCapacity: 3)
        for i in 0..<4 { bus.publish(.actionStart(eventAction("a\(i)"))) }
        #expect(sub.next(timeout: 0) == .closed(.overflow))
        #expect(bus.subscriberCount == 0)
    }

    @Test func sinceReplaysMissedEventsInOrderWithoutDuplicates() {
        let bus = EventBus(epoch: "e", ringCapacity: 16)
        for i in 1...10 { bus.publish(.actionStart(eventAction("a\(i)", camera: i % 2 == 0 ? "door" : "yard"))) }
        let sub = bus.subscribe(filter: EventFilter(cameras: ["door"]), since: ResumePoint(epoch: "e", seq: 4))
        bus.publish(.actionStart(eventAction("a11", camera: "door")))
        bus.publish(.actionStart(eventAction("a12", camera: "yard")))
        bus.publish(.actionStart(eventAction("a13", camera: "door")))
        #expect(drainLines(sub).map { $0["seq"] as? Int } == [6, 8, 10, 11, 13])

        let upToDate = bus.subscribe(since: ResumePoint(epoch: "e", seq: 13))
        #expect(drainLines(upToDate).isEmpty)
    }

    @Test func sinceConcurrentWithPublicationHasNoGapOrDuplicate() {
        let bus = EventBus(epoch: "e", ringCapacity: 100_000)
        let done = publishConcurrently(bus, count: 20_000, returningAt: 5_000)
        let sub = bus.subscribe(since: ResumePoint(epoch: "e", seq: 100), queueCapacity: 100_000)
        done.wait()
        let seqs = drainLines(sub).compactMap { $0["seq"] as? Int }
        #expect(seqs == Array(101...20_000))
    }

    @Test func resyncWhenTooOldOrOtherEpoch() {
        let bus = EventBus(epoch: "e", ringCapacity: 4)
        for i in 1...10 { bus.publish(.actionStart(eventAction("a\(i)"))) }
        let old = bus.subscribe(since: ResumePoint(epoch: "e", seq: 3))
        let other = bus.subscribe(since: ResumePoint(epoch: "previous", seq: 9))
        let future = bus.subscribe(since: ResumePoint(epoch: "e", seq: 99))
        bus.publish(.actionStart(eventAction("a11")))
        for sub in [old, other, future] {
            let lines = drainLines(sub)
            #expect(lines.map { $0["type"] as? String } == ["resync", "action.start"])
            #expect(lines.first?["oldest_seq"] as? Int == 7)
            #expect(lines.first?["latest_seq"] as? Int == 10)
            #expect(lines.first?["seq"] == nil)
            #expect(lines.last?["seq"] as? Int == 11)
        }
        // Exactly the oldest still held: replay, no resync.
        let edge = bus.subscribe(since: ResumePoint(epoch: "e", seq: 7))
        #expect(drainLines(edge).map { $0["seq"] as? Int } == [8, 9, 10, 11])
    }

    @Test func subscribeLineParsing() {
        let ok = SubscribeRequest.parse(Array(#"{"op":"subscribe","cameras":["door"],"min_score":0.5,"since":{"epoch":"e","seq":3}}"#.utf8))
        #expect(ok == .success(SubscribeRequest(cameras: ["door"], minScore: 0.5, since: ResumePoint(epoch: "e", seq: 3))))
        guard case .failure(let notJSON) = SubscribeRequest.parse(Array("hello there".utf8)) else { Issue.record(); return }
        #expect(notJSON.message.contains("not a JSON object"))
        guard case .failure(let badOp) = SubscribeRequest.parse(Array(#"{"op":"unsubscribe"}"#.utf8)) else { Issue.record(); return }
        #expect(badOp.message.contains("unknown op"))
        guard case .failure(let badType) = SubscribeRequest.parse(Array(#"{"op":"subscribe","cameras":"door"}"#.utf8)) else { Issue.record(); return }
        #expect(badType.message.contains("cameras"))
    }

    @Test func finishDeliversQueuedThenCloses() {
        let bus = EventBus(epoch: "e", ringCapacity: 4)
        let sub = bus.subscribe()
        bus.publish(.actionStart(eventAction("a")))
        bus.finishAll()
        bus.publish(.actionEnd(eventAction("a")))
        guard case .line(let l) = sub.next(timeout: 0) else { Issue.record("expected a line"); return }
        #expect(eventJSON(l)["type"] as? String == "action.start")
        #expect(sub.next(timeout: 0) == .closed(.finished))
    }
}
