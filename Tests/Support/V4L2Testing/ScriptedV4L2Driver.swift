import CV4L2
import Foundation
import Video

/// A fake V4L2 device behind the `V4L2Driver` seam, scripted step by step, for the error
/// paths a real driver cannot be made to take on demand: ENODEV mid-stream, EAGAIN, buffers
/// flagged V4L2_BUF_FLAG_ERROR, sequence gaps, opens that fail and then succeed.
///
/// It keeps the V4L2 rules a real driver enforces (a buffer must be queued to be dequeued and
/// cannot be queued twice, S_FMT adjusts the size, REQBUFS may grant fewer buffers) and
/// records every call so tests can check the order and that nothing leaks.
public final class ScriptedV4L2Driver: V4L2Driver, @unchecked Sendable {
    public enum Step: Equatable {
        /// A filled buffer with the next sequence number.
        case frame
        /// A buffer flagged V4L2_BUF_FLAG_ERROR (it consumes a sequence number).
        case flaggedError
        /// poll says ready, DQBUF says EAGAIN.
        case again
        /// The driver loses `n` frames: the sequence jumps.
        case skip(Int)
        /// DQBUF fails with this errno, and every later call on this descriptor too (a device
        /// that is gone stays gone until reopened).
        case fail(Int32)
    }

    public var formats: [UInt32]
    public var isCapture = true
    /// The largest size S_FMT grants; sizes are rounded down to even.
    public var maxSize = (width: 640, height: 480)
    public var supportsFrameInterval = true
    public var grantedBuffers = 4
    /// Results of the next open() calls, in order: 0 succeeds, a negative errno fails. When
    /// empty, opens succeed.
    public var openResults: [Int32] = []
    /// What DQBUF does next; when empty, poll times out (after a short real wait).
    public var steps: [Step] = []
    /// poll's real wait when nothing is scripted, in milliseconds (short to keep tests fast).
    public var idleWait: Int32 = 2

    /// Every call, e.g. "open /dev/video9", "VIDIOC_S_FMT 64x48 YUYV", "VIDIOC_DQBUF 2 seq 5".
    public private(set) var calls: [String] = []
    public private(set) var openDescriptors: Set<Int32> = []
    public private(set) var mappings = 0

    private let lock = NSLock()
    private var nextFD: Int32 = 100
    private var dead: Set<Int32> = []
    private var layout = (width: 0, height: 0, fourcc: UInt32(0), bytesPerLine: 0, size: 0)
    private var interval = (numerator: UInt32(1), denominator: UInt32(30))
    private var buffers: [UnsafeMutableRawPointer] = []
    private var queued: [Int] = []
    private var streaming = false
    private var sequence: UInt32 = 0

    public init(formats: [V4L2PixelFormat] = [.yuyv, .nv12]) {
        self.formats = formats.map(\.fourcc)
    }

    /// Locked access for tests that script a running capture from another thread.
    public func script(_ change: (ScriptedV4L2Driver) -> Void) { lock.withLock { change(self) } }
    public var pendingSteps: Int { lock.withLock { steps.count } }
    public var callLog: [String] { lock.withLock { calls } }
    public var descriptorsOpen: Int { lock.withLock { openDescriptors.count } }
    public var buffersMapped: Int { lock.withLock { mappings } }
    public var buffersQueued: Int { lock.withLock { queued.count } }

    /// The Y value every pixel of frame `sequence` has (U = V = 128: grey).
    public static func luma(sequence: UInt32) -> UInt8 { UInt8(16 + (sequence * 20) % 220) }

    private func record(_ call: String) { calls.append(call) }
    private func alive(_ fd: Int32) -> Int32? {
        guard openDescriptors.contains(fd) else { return -EBADF }
        return dead.contains(fd) ? -ENODEV : nil
    }

    public func open(_ path: String) -> Int32 {
        lock.withLock {
            record("open \(path)")
            if !openResults.isEmpty {
                let result = openResults.removeFirst()
                if result < 0 { return result }
            }
            nextFD += 1
            openDescriptors.insert(nextFD)
            sequence = 0
            return nextFD
        }
    }

    public func close(_ fd: Int32) {
        lock.withLock {
            record("close")
            openDescriptors.remove(fd)
            dead.remove(fd)
            streaming = false
            queued = []
        }
    }

    public func queryCapability(_ fd: Int32, _ capability: inout v4l2_capability) -> Int32 {
        lock.withLock {
            record("VIDIOC_QUERYCAP")
            if let error = alive(fd) { return error }
            withUnsafeMutableBytes(of: &capability.card) { card in
                for (i, byte) in "scripted camera".utf8.enumerated() { card[i] = byte }
            }
            let caps = UInt32(V4L2_CAP_STREAMING) | (isCapture ? UInt32(V4L2_CAP_VIDEO_CAPTURE) : UInt32(V4L2_CAP_VIDEO_OUTPUT))
            capability.capabilities = caps | UInt32(V4L2_CAP_DEVICE_CAPS)
            capability.device_caps = caps
            return 0
        }
    }

    public func enumerateFormat(_ fd: Int32, _ description: inout v4l2_fmtdesc) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            guard Int(description.index) < formats.count else { return -EINVAL }
            description.pixelformat = formats[Int(description.index)]
            return 0
        }
    }

    public func setFormat(_ fd: Int32, _ format: inout v4l2_format) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            if streaming { return -EBUSY }
            var pix = format.fmt.pix
            if !formats.contains(pix.pixelformat) { pix.pixelformat = formats[0] }
            pix.width = UInt32(min(Int(pix.width), maxSize.width) & ~1)
            pix.height = UInt32(min(Int(pix.height), maxSize.height) & ~1)
            let fourcc = V4L2PixelFormat(fourcc: pix.pixelformat)
            pix.bytesperline = fourcc == .yuyv ? pix.width * 2 : pix.width
            pix.sizeimage = fourcc == .nv12 ? pix.bytesperline * pix.height * 3 / 2 : pix.bytesperline * pix.height
            pix.colorspace = V4L2_COLORSPACE_SRGB.rawValue
            format.fmt.pix = pix
            layout = (Int(pix.width), Int(pix.height), pix.pixelformat, Int(pix.bytesperline), Int(pix.sizeimage))
            record("VIDIOC_S_FMT \(pix.width)x\(pix.height) \(V4L2PixelFormat.name(pix.pixelformat))")
            return 0
        }
    }

    public func getParameters(_ fd: Int32, _ parameters: inout v4l2_streamparm) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            guard supportsFrameInterval else { return -ENOTTY }
            parameters.parm.capture.capability = UInt32(V4L2_CAP_TIMEPERFRAME)
            parameters.parm.capture.timeperframe = v4l2_fract(numerator: interval.numerator, denominator: interval.denominator)
            return 0
        }
    }

    public func setParameters(_ fd: Int32, _ parameters: inout v4l2_streamparm) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            guard supportsFrameInterval else { return -ENOTTY }
            let asked = parameters.parm.capture.timeperframe
            // Whole frame rates only, as many webcams: round to the nearest.
            let fps = max(1, (Double(asked.denominator) / Double(max(asked.numerator, 1))).rounded())
            interval = (1, UInt32(fps))
            parameters.parm.capture.timeperframe = v4l2_fract(numerator: 1, denominator: UInt32(fps))
            record("VIDIOC_S_PARM \(asked.numerator)/\(asked.denominator)")
            return 0
        }
    }

    public func requestBuffers(_ fd: Int32, _ request: inout v4l2_requestbuffers) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            request.count = UInt32(min(Int(request.count), grantedBuffers))
            record("VIDIOC_REQBUFS \(request.count)")
            return 0
        }
    }

    public func queryBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            buffer.length = UInt32(layout.size)
            buffer.m.offset = buffer.index * 4096
            return 0
        }
    }

    public func map(_ fd: Int32, length: Int, offset: UInt32) -> Result<UnsafeMutableRawPointer, V4L2Errno> {
        lock.withLock {
            if let error = alive(fd) { return .failure(V4L2Errno(-error)) }
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 64)
            let index = Int(offset / 4096)
            if buffers.count <= index { buffers.append(contentsOf: repeatElement(pointer, count: index + 1 - buffers.count)) }
            buffers[index] = pointer
            mappings += 1
            return .success(pointer)
        }
    }

    public func unmap(_ pointer: UnsafeMutableRawPointer, length: Int) {
        lock.withLock {
            pointer.deallocate()
            mappings -= 1
        }
    }

    public func queueBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            let index = Int(buffer.index)
            guard index < buffers.count, !queued.contains(index) else { return -EINVAL }
            queued.append(index)
            return 0
        }
    }

    public func dequeueBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            guard streaming else { return -EINVAL }
            guard !steps.isEmpty else { return -EAGAIN }
            switch steps.removeFirst() {
            case .again:
                return -EAGAIN
            case .skip(let n):
                sequence += UInt32(n)
                return -EAGAIN
            case .fail(let code):
                dead.insert(fd)
                record("VIDIOC_DQBUF fails \(code)")
                return -code
            case let step:
                guard !queued.isEmpty else { return -EINVAL }
                let index = queued.removeFirst()
                let seq = sequence
                sequence += 1
                fill(buffers[index], sequence: seq)
                buffer.index = UInt32(index)
                buffer.sequence = seq
                buffer.bytesused = UInt32(layout.size)
                buffer.flags = UInt32(V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC)
                if step == .flaggedError { buffer.flags |= UInt32(V4L2_BUF_FLAG_ERROR) }
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                buffer.timestamp = timeval(tv_sec: now.tv_sec, tv_usec: now.tv_nsec / 1000)
                record("VIDIOC_DQBUF \(index) seq \(seq)")
                return 0
            }
        }
    }

    public func streamOn(_ fd: Int32) -> Int32 {
        lock.withLock {
            if let error = alive(fd) { return error }
            streaming = true
            record("VIDIOC_STREAMON")
            return 0
        }
    }

    public func streamOff(_ fd: Int32) -> Int32 {
        lock.withLock {
            record("VIDIOC_STREAMOFF")
            if let error = alive(fd) { return error }
            streaming = false
            queued = []
            return 0
        }
    }

    public func poll(_ fd: Int32, timeoutMilliseconds: Int32) -> Int32 {
        let ready = lock.withLock { () -> Int32? in
            if let error = alive(fd) { return error == -ENODEV ? 1 : error }
            return steps.isEmpty ? nil : 1
        }
        if let ready { return ready }
        usleep(UInt32(min(timeoutMilliseconds, idleWait)) * 1000)
        return 0
    }

    /// A grey frame: Y = `luma(sequence)`, chroma neutral.
    private func fill(_ pointer: UnsafeMutableRawPointer, sequence: UInt32) {
        let y = Self.luma(sequence: sequence)
        let bytes = pointer.assumingMemoryBound(to: UInt8.self)
        switch V4L2PixelFormat(fourcc: layout.fourcc) {
        case .yuyv:
            for i in 0..<(layout.size / 2) {
                bytes[2 * i] = y
                bytes[2 * i + 1] = 128
            }
        case .nv12:
            let lumaBytes = layout.bytesPerLine * layout.height
            bytes.update(repeating: y, count: lumaBytes)
            (bytes + lumaBytes).update(repeating: 128, count: layout.size - lumaBytes)
        default:
            bytes.update(repeating: 0, count: layout.size)
        }
    }
}
