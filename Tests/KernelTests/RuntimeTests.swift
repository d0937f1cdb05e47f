import CKernels
import Foundation
import Testing

/// What every task of a pool job records: how often it ran, and on which worker. Each task
/// writes only its own slots of fixed buffers (no Array value shared between threads), so no
/// atomics are needed when each runs once, and a task run twice shows as a count of 2.
final class TaskLedger {
    let pool: OpaquePointer?
    let tasks: Int
    let innerTasks: Int
    let runs: UnsafeMutableBufferPointer<Int>
    let workers: UnsafeMutableBufferPointer<Int32>
    /// (tasks, innerTasks) row-major: runs of inner task i from outer task t.
    let innerRuns: UnsafeMutableBufferPointer<Int>
    let innerWorkers: UnsafeMutableBufferPointer<Int32>
    /// Calls with a task index outside [0, tasks): the first such index, or nil.
    var outOfRange: Int?

    init(pool: OpaquePointer?, tasks: Int, innerTasks: Int = 0) {
        self.pool = pool
        self.tasks = tasks
        self.innerTasks = innerTasks
        runs = .allocate(capacity: tasks)
        runs.initialize(repeating: 0)
        workers = .allocate(capacity: tasks)
        workers.initialize(repeating: -1)
        innerRuns = .allocate(capacity: tasks * innerTasks)
        innerRuns.initialize(repeating: 0)
        innerWorkers = .allocate(capacity: tasks * innerTasks)
        innerWorkers.initialize(repeating: -1)
    }

    deinit {
        runs.deallocate()
        workers.deallocate()
        innerRuns.deallocate()
        innerWorkers.deallocate()
    }

    var context: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
    static func from(_ context: UnsafeMutableRawPointer?) -> TaskLedger {
        Unmanaged<TaskLedger>.fromOpaque(context!).takeUnretainedValue()
    }
}

private func countTask(_ context: UnsafeMutableRawPointer?, _ task: Int, _ worker: Int32) {
    let ledger = TaskLedger.from(context)
    guard task >= 0 && task < ledger.tasks else {
        if ledger.outOfRange == nil { ledger.outOfRange = task }
        return
    }
    ledger.runs[task] += 1
    ledger.workers[task] = worker
}

/// The inner job of a nested run: which outer task started it.
private final class InnerJob {
    let ledger: TaskLedger
    let outer: Int
    init(ledger: TaskLedger, outer: Int) { self.ledger = ledger; self.outer = outer }
}

private func innerTask(_ context: UnsafeMutableRawPointer?, _ task: Int, _ worker: Int32) {
    let job = Unmanaged<InnerJob>.fromOpaque(context!).takeUnretainedValue()
    let slot = job.outer * job.ledger.innerTasks + task
    job.ledger.innerRuns[slot] += 1
    job.ledger.innerWorkers[slot] = worker
}

/// Counts itself, then runs a whole pool job from inside the task.
private func nestingTask(_ context: UnsafeMutableRawPointer?, _ task: Int, _ worker: Int32) {
    countTask(context, task, worker)
    let ledger = TaskLedger.from(context)
    let job = InnerJob(ledger: ledger, outer: task)
    withExtendedLifetime(job) {
        m2k_pool_run(ledger.pool, ledger.innerTasks, innerTask,
                     Unmanaged.passUnretained(job).toOpaque())
    }
}

// No closure appears inside an #expect here: with Swift 6.3.1, a closure in #expect's
// arguments inside another closure (the withPool body) can share its symbol with the next
// closure of the function, which then silently runs the wrong code.
@Suite("Thread pool, scratch memory, CPU features, dispatch")
struct RuntimeTests {
    static let taskCounts = [1, 2, 3, 4, 7, 16, 63, 64, 65, 1000]

    @Test("m2k_pool_run runs every task exactly once, on a valid worker",
          arguments: [1, 2, 3] as [Int32])
    func everyTaskOnce(threads: Int32) throws {
        try withPool(threads: threads) { pool in
            #expect(m2k_pool_threads(pool) == threads)
            for tasks in Self.taskCounts {
                let ledger = TaskLedger(pool: pool, tasks: tasks)
                withExtendedLifetime(ledger) {
                    m2k_pool_run(pool, tasks, countTask, ledger.context)
                }
                let label = "\(threads) threads, \(tasks) tasks"
                let wrong = ledger.runs.firstIndex { $0 != 1 }
                let times = wrong.map { ledger.runs[$0] } ?? 0
                #expect(wrong == nil, "\(label): task \(wrong ?? -1) ran \(times) times")
                #expect(ledger.outOfRange == nil, "\(label): ran task \(ledger.outOfRange ?? 0)")
                let validWorkers = ledger.workers.allSatisfy { $0 >= 0 && $0 < threads }
                #expect(validWorkers, "\(label): workers \(Set(ledger.workers).sorted())")
            }
            // Zero tasks: returns without calling anything.
            let empty = TaskLedger(pool: pool, tasks: 0)
            withExtendedLifetime(empty) { m2k_pool_run(pool, 0, countTask, empty.context) }
        }
    }

    @Test("m2k_pool_run with a NULL pool runs serially on the caller")
    func nullPool() {
        let ledger = TaskLedger(pool: nil, tasks: 37)
        withExtendedLifetime(ledger) { m2k_pool_run(nil, 37, countTask, ledger.context) }
        let once = ledger.runs.allSatisfy { $0 == 1 }
        let onCaller = ledger.workers.allSatisfy { $0 == 0 }
        #expect(once && onCaller)
        #expect(m2k_pool_threads(nil) == 1)
    }

    @Test("m2k_pool_run from inside a task runs the inner job serially, each task once")
    func nestedRun() throws {
        try withPool(threads: 2) { pool in
            for (outer, inner) in [(1, 5), (2, 1), (7, 13), (64, 3)] {
                let ledger = TaskLedger(pool: pool, tasks: outer, innerTasks: inner)
                withExtendedLifetime(ledger) {
                    m2k_pool_run(pool, outer, nestingTask, ledger.context)
                }
                let label = "outer \(outer) × inner \(inner)"
                let outerOnce = ledger.runs.allSatisfy { $0 == 1 }
                #expect(outerOnce, "\(label): outer runs \(Array(ledger.runs))")
                let wrong = ledger.innerRuns.firstIndex { $0 != 1 }
                let times = wrong.map { ledger.innerRuns[$0] } ?? 0
                #expect(wrong == nil, "\(label): inner slot \(wrong ?? -1) ran \(times) times")
                // Serial on the thread of the outer task: the inner job sees worker 0.
                let serial = ledger.innerWorkers.allSatisfy { $0 == 0 }
                #expect(serial, "\(label): inner workers \(Set(ledger.innerWorkers).sorted())")
            }
        }
    }

    /// Back-to-back jobs of alternating sizes: a worker that wakes late for one job must not
    /// run into the next one with the previous job's task count (a task run past the end, or
    /// claimed and dropped so that m2k_pool_run never returns).
    /// Alone this runs 200 000 jobs in about a second; beside the rest of the suite on two
    /// cores every hand-over waits for the scheduler, so the loop also stops after 15 s
    /// (a hang still trips the time limit).
    @Test("back-to-back jobs of alternating sizes stay separate", .timeLimit(.minutes(1)))
    func backToBackJobs() throws {
        try withPool(threads: 2) { pool in
            var failures = 0
            let deadline = ContinuousClock.now + .seconds(15)
            for job in 0..<200_000 where failures == 0 {
                if job % 1024 == 0 && ContinuousClock.now > deadline { break }
                let tasks = job % 2 == 0 ? 64 : 2
                let ledger = TaskLedger(pool: pool, tasks: tasks)
                withExtendedLifetime(ledger) {
                    m2k_pool_run(pool, tasks, countTask, ledger.context)
                }
                if ledger.outOfRange != nil || ledger.runs.contains(where: { $0 != 1 }) {
                    failures += 1
                    let stray = ledger.outOfRange.map(String.init) ?? "none"
                    let runs = Array(ledger.runs)
                    Issue.record(
                        "job \(job) (\(tasks) tasks): runs \(runs), task out of range: \(stray)")
                }
            }
        }
    }

    @Test("m2k_pool_create rejects fewer than one thread")
    func poolCreateRejectsZero() {
        errno = 0
        #expect(m2k_pool_create(0) == nil)
        #expect(errno == EINVAL)
    }

    @Test("m2k_thread_scratch reuses one 64-byte aligned buffer per slot and thread")
    func threadScratch() {
        guard let first = m2k_thread_scratch(0, 1000) else {
            Issue.record("m2k_thread_scratch(0, 1000) returned NULL")
            return
        }
        #expect(UInt(bitPattern: first) % 64 == 0)
        first[249] = 42  // the whole request is usable
        #expect(m2k_thread_scratch(0, 1000) == first, "same size: same buffer")
        #expect(m2k_thread_scratch(0, 16) == first, "smaller: same buffer")
        let other = m2k_thread_scratch(1, 1000)
        #expect(other != nil && other != first, "another slot: another buffer")
        let grown = m2k_thread_scratch(0, 1 << 20)
        #expect(grown != nil)
        #expect(m2k_thread_scratch(0, 1000) == grown, "after growing, the grown buffer is kept")
        #expect(m2k_thread_scratch(-1, 16) == nil)
        // Compare with the live buffers only: `first` was freed when slot 0 grew, and the
        // allocator may hand its address out again.
        let fp16Slice = m2k_thread_scratch(4, 1000) // the GEMM's widened fp16/bf16 B slice
        #expect(fp16Slice != nil && fp16Slice != grown && fp16Slice != other)
        let backward = m2k_thread_scratch(7, 1000) // the last slot: the trainer's backward
        #expect(backward != nil && backward != fp16Slice && backward != grown && backward != other)
        #expect(m2k_thread_scratch(8, 16) == nil)
    }

    @Test("kernel tables: names, variants and micro-tiles the GEMM driver can hold")
    func tables() {
        let names = ["scalar", "avx2", "avx512", "neon"]
        #expect(m2k_variant_kernels(M2K_VARIANT_SCALAR) != nil)
        #expect(m2k_variant_kernels(M2K_VARIANT_COUNT) == nil)
        for raw in M2K_VARIANT_SCALAR.rawValue..<M2K_VARIANT_COUNT.rawValue {
            guard let k = m2k_variant_kernels(m2k_variant(rawValue: raw)) else { continue }
            #expect(k.pointee.variant.rawValue == raw)
            #expect(k.name == names[Int(raw)])
            // gemm.c gathers edge tiles in a 32 × 64 float buffer.
            #expect(k.pointee.mr > 0 && k.pointee.nr > 0 && k.pointee.mr * k.pointee.nr <= 32 * 64)
            #expect(k.pointee.sgemm_micro != nil && k.pointee.bias_act != nil
                    && k.pointee.layernorm != nil && k.pointee.softmax != nil
                    && k.pointee.quickgelu != nil && k.pointee.gelu != nil && k.pointee.add != nil
                    && k.pointee.f16_to_f32 != nil && k.pointee.bf16_to_f32 != nil)
        }
    }

    @Test("m2k_cpu agrees with the variants it enables and with the kernel's view")
    func cpuFeatures() throws {
        let f = m2k_cpu()!.pointee
        #if arch(x86_64)
        // Both x86 tables widen fp16 weights with F16C.
        #expect((m2k_variant_kernels(M2K_VARIANT_AVX2) != nil)
                == (f.avx2 != 0 && f.fma != 0 && f.f16c != 0))
        #expect((m2k_variant_kernels(M2K_VARIANT_AVX512) != nil)
                == (f.avx512f != 0 && f.avx512bw != 0 && f.avx512dq != 0 && f.avx512vl != 0
                    && f.f16c != 0))
        #expect(m2k_variant_kernels(M2K_VARIANT_NEON) == nil)
        // Features whose register state the OS has not enabled are reported absent.
        if f.avx2 != 0 || f.fma != 0 { #expect(f.os_avx != 0) }
        if f.avx512f != 0 { #expect(f.os_avx512 != 0 && f.os_avx != 0) }
        #if os(Linux)
        // Linux lists in /proc/cpuinfo what CPUID has and the kernel enabled: the same facts.
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        if let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) {
            let flags = Set(line.split(separator: " ").map(String.init))
            let ours: [(String, Int32)] = [
                ("avx2", f.avx2), ("fma", f.fma), ("f16c", f.f16c), ("avx512f", f.avx512f),
                ("avx512bw", f.avx512bw), ("avx512dq", f.avx512dq), ("avx512vl", f.avx512vl),
            ]
            for (flag, value) in ours {
                #expect(flags.contains(flag) == (value != 0),
                        "\(flag): /proc/cpuinfo \(flags.contains(flag)), m2k_cpu \(value)")
            }
        }
        #endif
        #elseif arch(arm64)
        #expect((m2k_variant_kernels(M2K_VARIANT_NEON) != nil) == (f.neon != 0))
        #expect(m2k_variant_kernels(M2K_VARIANT_AVX2) == nil)
        #endif
    }

    /// M2CLIP_KERNELS is read once per process, so this checks the run's own setting: unset
    /// or naming a variant this CPU runs, it is honoured without error.
    @Test("m2k_active honours M2CLIP_KERNELS")
    func dispatch() {
        guard let active = m2k_active() else {
            Issue.record("m2k_active() returned NULL")
            return
        }
        let best = availableVariants().last!
        let requested = ProcessInfo.processInfo.environment["M2CLIP_KERNELS"] ?? ""
        let runnable = availableVariants().map(\.name)
        if requested.isEmpty {
            #expect(m2k_dispatch_error() == nil)
            #expect(active == best, "default: \(active.name), best: \(best.name)")
        } else if runnable.contains(requested) {
            #expect(m2k_dispatch_error() == nil)
            #expect(active.name == requested)
        } else {
            let error = m2k_dispatch_error().map { String(cString: $0) }
            #expect(error?.contains(requested) == true, "error: \(error ?? "none")")
            #expect(active == best)
        }
    }
}
