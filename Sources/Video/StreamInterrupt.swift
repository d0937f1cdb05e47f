import CFFmpeg
import Glibc
import Synchronization

/// Aborts the libavformat calls of the streams it was given to, from any thread: a blocked
/// connect, probe or read returns within about 0.1 s (libavformat polls its interrupt callback
/// at least that often while it waits on a socket), and every later call fails at once.
/// Cancelling cannot be undone; a source that reconnects keeps one for its whole life.
public final class StreamCancellation: Sendable {
    private let cancelled = Atomic<Bool>(false)

    public init() {}

    public func cancel() { cancelled.store(true, ordering: .releasing) }

    public var isCancelled: Bool { cancelled.load(ordering: .acquiring) }
}

/// The state behind one input's AVIOInterruptCB: a deadline on CLOCK_MONOTONIC, armed before
/// each blocking call, and the shared cancellation. Read by libavformat on the calling thread;
/// `cancellation` is set from others, hence atomics.
final class StreamInterrupt: Sendable {
    enum Cause: Int8 {
        case deadline = 1
        case cancelled = 2
    }

    let cancellation: StreamCancellation
    private let deadline = Atomic<UInt64>(.max) // CLOCK_MONOTONIC nanoseconds
    private let firedCause = Atomic<Int8>(0)    // Cause.rawValue; 0: not fired since arming

    init(cancellation: StreamCancellation) {
        self.cancellation = cancellation
    }

    /// Gives the next blocking call `seconds` from now, and forgets an earlier abort.
    func arm(seconds: Double) {
        let nanoseconds = UInt64(min(max(seconds, 0), 1e9) * 1e9)
        deadline.store(StreamInterrupt.now() &+ nanoseconds, ordering: .relaxed)
        firedCause.store(0, ordering: .relaxed)
    }

    /// Why the interrupt callback aborted a call since the last `arm`, if it did.
    var cause: Cause? { Cause(rawValue: firedCause.load(ordering: .relaxed)) }

    /// The interrupt callback's answer: abort (true) once cancelled or past the deadline.
    func shouldAbort() -> Bool {
        let cause: Cause
        if cancellation.isCancelled {
            cause = .cancelled
        } else if StreamInterrupt.now() >= deadline.load(ordering: .relaxed) {
            cause = .deadline
        } else {
            return false
        }
        firedCause.store(cause.rawValue, ordering: .relaxed)
        return true
    }

    /// For AVFormatContext.interrupt_callback. The opaque pointer is unretained: the owner of
    /// the context keeps this object alive until avformat_close_input has returned.
    var callback: AVIOInterruptCB {
        AVIOInterruptCB(callback: { opaque in
            guard let opaque else { return 0 }
            return Unmanaged<StreamInterrupt>.fromOpaque(opaque).takeUnretainedValue().shouldAbort() ? 1 : 0
        }, opaque: Unmanaged.passUnretained(self).toOpaque())
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
