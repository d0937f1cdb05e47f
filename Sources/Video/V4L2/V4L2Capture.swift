import CV4L2
import Glibc

/// One open V4L2 capture device streaming into mmap buffers.
///
/// Opening negotiates in the order drivers expect: VIDIOC_QUERYCAP (a capture device that
/// streams), VIDIOC_ENUM_FMT (pick the pixel format), VIDIOC_S_FMT (size; the driver picks
/// the nearest it has), then VIDIOC_S_PARM (frame interval, after the format because the
/// intervals a driver offers depend on it), VIDIOC_REQBUFS + QUERYBUF + mmap, QBUF of every
/// buffer, VIDIOC_STREAMON. `next` gives the previous buffer back to the driver, polls and
/// dequeues one; `decodeHeld` converts it to RGB only when the caller wants its pixels, so
/// frames a sampler skips cost no conversion.
///
/// Not thread-safe: one capture thread owns it.
public final class V4L2Capture {
    /// What the configuration asks for; the driver may adjust size and rate.
    public struct Request: Sendable, Equatable {
        public var width: Int
        public var height: Int
        public var fps: Double
        /// nil: the first of `V4L2PixelFormat.preference` the device offers.
        public var format: V4L2PixelFormat?
        public var buffers: Int

        public init(width: Int, height: Int, fps: Double, format: V4L2PixelFormat? = nil, buffers: Int = 4) {
            self.width = width
            self.height = height
            self.fps = fps
            self.format = format
            self.buffers = buffers
        }
    }

    /// One dequeued buffer, held until the next `next` (its pixels: `decodeHeld`).
    public struct Frame {
        /// The driver's frame counter; a gap means it dropped frames.
        public var sequence: UInt32
        /// The buffer's capture time in seconds on CLOCK_MONOTONIC, when the driver stamps on
        /// that clock (`V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC`); nil otherwise.
        public var monotonic: Double?
    }

    public enum Next {
        case frame(Frame)
        /// Nothing arrived within the timeout (or a spurious wake-up: EAGAIN).
        case timeout
        /// A buffer came back flagged V4L2_BUF_FLAG_ERROR; it was requeued and its frame is
        /// lost.
        case corrupt(sequence: UInt32, reason: String)
    }

    public let device: String
    public let driver: V4L2Driver
    /// What the driver settled on.
    public let layout: V4L2FrameLayout
    /// Frames per second after S_PARM (the request when the driver has no frame-interval control).
    public let fps: Double
    public let card: String

    private var fd: Int32
    private var buffers: [(pointer: UnsafeMutableRawPointer, length: Int)] = []
    private let decoder: V4L2FrameDecoder
    private var streaming = false
    /// The buffer the last `next` dequeued, until the following `next` requeues it.
    private var held: (index: Int, sequence: UInt32, bytes: Int, monotonic: Double?)?

    /// Opens, negotiates and starts streaming; closes the device again when any step fails.
    public init(device: String, request: Request, driver: V4L2Driver = LinuxV4L2Driver.shared) throws(V4L2Error) {
        let opened = driver.open(device)
        guard opened >= 0 else { throw V4L2Error(device: device, call: "open", code: -opened) }
        var session = Session(fd: opened)
        do throws(V4L2Error) {
            try Self.negotiate(&session, device: device, request: request, driver: driver)
        } catch {
            for buffer in session.buffers { driver.unmap(buffer.pointer, length: buffer.length) }
            driver.close(opened)
            throw error
        }
        self.device = device
        self.driver = driver
        fd = opened
        layout = session.layout!
        fps = session.fps
        card = session.card
        buffers = session.buffers
        decoder = V4L2FrameDecoder(layout: session.layout!)
        streaming = true
    }

    /// What opening found out, gathered before the capture exists.
    private struct Session {
        var fd: Int32
        var card = ""
        var layout: V4L2FrameLayout?
        var fps = 0.0
        var buffers: [(pointer: UnsafeMutableRawPointer, length: Int)] = []
    }

    private static func negotiate(_ session: inout Session, device: String, request: Request,
                                  driver: V4L2Driver) throws(V4L2Error) {
        let fd = session.fd
        var capability = v4l2_capability()
        try check(driver.queryCapability(fd, &capability), device, "VIDIOC_QUERYCAP")
        let caps = capability.capabilities & UInt32(V4L2_CAP_DEVICE_CAPS) != 0
            ? capability.device_caps : capability.capabilities
        let card = withUnsafeBytes(of: capability.card) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        session.card = card
        guard caps & UInt32(V4L2_CAP_VIDEO_CAPTURE) != 0 else {
            throw V4L2Error(device: device, call: "VIDIOC_QUERYCAP",
                            detail: "\"\(card)\" is not a single-planar video capture device")
        }
        guard caps & UInt32(V4L2_CAP_STREAMING) != 0 else {
            throw V4L2Error(device: device, call: "VIDIOC_QUERYCAP", detail: "\"\(card)\" cannot stream (no mmap I/O)")
        }

        let offered = try formats(fd, driver: driver, device: device)
        let chosen: V4L2PixelFormat
        if let wanted = request.format {
            guard offered.contains(wanted.fourcc) else {
                throw V4L2Error(device: device, call: "VIDIOC_ENUM_FMT",
                                detail: "format \(wanted.rawValue) is not offered; the device has "
                                    + offered.map(V4L2PixelFormat.name).joined(separator: ", "))
            }
            chosen = wanted
        } else {
            guard let first = V4L2PixelFormat.preference.first(where: { offered.contains($0.fourcc) }) else {
                throw V4L2Error(device: device, call: "VIDIOC_ENUM_FMT",
                                detail: "none of YUYV, NV12, MJPG is offered; the device has "
                                    + offered.map(V4L2PixelFormat.name).joined(separator: ", "))
            }
            chosen = first
        }

        var format = v4l2_format()
        format.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        format.fmt.pix.width = UInt32(request.width)
        format.fmt.pix.height = UInt32(request.height)
        format.fmt.pix.pixelformat = chosen.fourcc
        format.fmt.pix.field = V4L2_FIELD_NONE.rawValue
        try check(driver.setFormat(fd, &format), device, "VIDIOC_S_FMT")
        guard var layout = V4L2FrameLayout(format.fmt.pix), layout.width > 0, layout.height > 0 else {
            throw V4L2Error(device: device, call: "VIDIOC_S_FMT",
                            detail: "driver answered \(V4L2PixelFormat.name(format.fmt.pix.pixelformat)) "
                                + "\(format.fmt.pix.width)x\(format.fmt.pix.height) for \(chosen.rawValue)")
        }
        if layout.bytesPerLine == 0 { layout.bytesPerLine = layout.width * (layout.format == .yuyv ? 2 : 1) }
        session.layout = layout
        session.fps = setFrameRate(fd, request.fps, driver: driver)

        var requestBuffers = v4l2_requestbuffers()
        requestBuffers.count = UInt32(request.buffers)
        requestBuffers.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        requestBuffers.memory = V4L2_MEMORY_MMAP.rawValue
        try check(driver.requestBuffers(fd, &requestBuffers), device, "VIDIOC_REQBUFS")
        guard requestBuffers.count >= 2 else {
            throw V4L2Error(device: device, call: "VIDIOC_REQBUFS", detail: "only \(requestBuffers.count) buffer(s) granted")
        }
        for index in 0..<requestBuffers.count {
            var buffer = Self.buffer(index: index)
            try check(driver.queryBuffer(fd, &buffer), device, "VIDIOC_QUERYBUF")
            let length = Int(buffer.length)
            switch driver.map(fd, length: length, offset: buffer.m.offset) {
            case .success(let pointer): session.buffers.append((pointer, length))
            case .failure(let error): throw V4L2Error(device: device, call: "mmap", code: error.code)
            }
            try check(driver.queueBuffer(fd, &buffer), device, "VIDIOC_QBUF")
        }
        try check(driver.streamOn(fd), device, "VIDIOC_STREAMON")
    }

    deinit { close() }

    /// Waits up to `timeoutMilliseconds` for a buffer, decodes it and gives the buffer back to
    /// the driver. Throws when the device fails (ENODEV once unplugged, EIO); the capture is
    /// then dead: `close` it and open a new one.
    public func next(timeoutMilliseconds: Int32) throws(V4L2Error) -> Next {
        if let previous = held {
            held = nil
            var requeue = Self.buffer(index: UInt32(previous.index))
            try Self.check(driver.queueBuffer(fd, &requeue), device, "VIDIOC_QBUF")
        }
        let ready = driver.poll(fd, timeoutMilliseconds: timeoutMilliseconds)
        if ready < 0 { throw V4L2Error(device: device, call: "poll", code: -ready) }
        if ready == 0 { return .timeout }
        var buffer = Self.buffer(index: 0)
        let dequeued = driver.dequeueBuffer(fd, &buffer)
        if dequeued == -EAGAIN { return .timeout }
        try Self.check(dequeued, device, "VIDIOC_DQBUF")
        let index = Int(buffer.index)
        guard index < buffers.count else {
            throw V4L2Error(device: device, call: "VIDIOC_DQBUF", detail: "driver returned buffer \(index) of \(buffers.count)")
        }
        let sequence = buffer.sequence
        if buffer.flags & UInt32(V4L2_BUF_FLAG_ERROR) != 0 {
            var requeue = Self.buffer(index: UInt32(index))
            try Self.check(driver.queueBuffer(fd, &requeue), device, "VIDIOC_QBUF")
            return .corrupt(sequence: sequence, reason: "driver flagged the buffer V4L2_BUF_FLAG_ERROR")
        }
        let monotonic = buffer.flags & UInt32(V4L2_BUF_FLAG_TIMESTAMP_MASK) == UInt32(V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC)
            ? Double(buffer.timestamp.tv_sec) + Double(buffer.timestamp.tv_usec) / 1e6 : nil
        let used = min(Int(buffer.bytesused == 0 ? buffer.length : buffer.bytesused), buffers[index].length)
        held = (index, sequence, used, monotonic)
        return .frame(Frame(sequence: sequence, monotonic: monotonic))
    }

    /// The pixels of the buffer the last `next` returned (short buffers and broken JPEGs fail);
    /// `sequence`, when given, must be that buffer's, so a stale request cannot read a buffer
    /// the driver is filling again.
    public func decodeHeld(sequence: UInt32? = nil) -> Result<RGBFrame, V4L2FrameDecoder.DecodeFailure> {
        guard let held, sequence == nil || sequence == held.sequence else {
            return .failure(.init("frame \(sequence.map(String.init) ?? "?") is no longer held (decode it inside onFrame)"))
        }
        let bytes = UnsafeRawBufferPointer(start: buffers[held.index].pointer, count: held.bytes)
        return decoder.decode(bytes, sequence: Int(held.sequence), timestamp: held.monotonic ?? 0)
    }

    /// VIDIOC_STREAMOFF, unmaps the buffers and closes the device; safe to call twice and on
    /// a device that is already gone.
    public func close() {
        guard fd >= 0 else { return }
        if streaming { _ = driver.streamOff(fd) }
        streaming = false
        held = nil
        unmapAll()
        driver.close(fd)
        fd = -1
    }

    private func unmapAll() {
        for buffer in buffers { driver.unmap(buffer.pointer, length: buffer.length) }
        buffers = []
    }

    private static func buffer(index: UInt32) -> v4l2_buffer {
        var buffer = v4l2_buffer()
        buffer.index = index
        buffer.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        buffer.memory = V4L2_MEMORY_MMAP.rawValue
        return buffer
    }

    private static func check(_ result: Int32, _ device: String, _ call: String) throws(V4L2Error) {
        if result < 0 { throw V4L2Error(device: device, call: call, code: -result) }
    }

    /// Every pixel format VIDIOC_ENUM_FMT lists for capture.
    private static func formats(_ fd: Int32, driver: V4L2Driver, device: String) throws(V4L2Error) -> [UInt32] {
        var fourccs: [UInt32] = []
        for index in 0..<256 {
            var description = v4l2_fmtdesc()
            description.index = UInt32(index)
            description.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
            let result = driver.enumerateFormat(fd, &description)
            if result == -EINVAL { break }
            try check(result, device, "VIDIOC_ENUM_FMT")
            fourccs.append(description.pixelformat)
        }
        return fourccs
    }

    /// VIDIOC_S_PARM with the frame interval 1/fps (as a fraction over 1000 so 29.97 fits),
    /// then what the driver settled on. Drivers without V4L2_CAP_TIMEPERFRAME keep their own
    /// rate: G_PARM's interval if it gives one, else the request.
    private static func setFrameRate(_ fd: Int32, _ fps: Double, driver: V4L2Driver) -> Double {
        var parameters = v4l2_streamparm()
        parameters.type = V4L2_BUF_TYPE_VIDEO_CAPTURE.rawValue
        if driver.getParameters(fd, &parameters) >= 0,
           parameters.parm.capture.capability & UInt32(V4L2_CAP_TIMEPERFRAME) != 0 {
            parameters.parm.capture.timeperframe = v4l2_fract(numerator: 1000, denominator: UInt32((fps * 1000).rounded()))
            _ = driver.setParameters(fd, &parameters)
        }
        let interval = parameters.parm.capture.timeperframe
        guard interval.numerator > 0, interval.denominator > 0 else { return fps }
        return Double(interval.denominator) / Double(interval.numerator)
    }
}
