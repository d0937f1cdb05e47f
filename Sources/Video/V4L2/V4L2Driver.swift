import CV4L2
import Glibc

/// Every V4L2 system call the capture code makes, in one place: the seam tests script to
/// fail (ENODEV mid-stream, EAGAIN, buffers flagged as errors) without a device.
///
/// Calls mirror the ioctls one to one, take the kernel's own structures, retry on EINTR and
/// return 0 (or a non-negative count) on success and -errno on failure.
public protocol V4L2Driver: AnyObject, Sendable {
    /// open(2) the node non-blocking; a descriptor or -errno.
    func open(_ path: String) -> Int32
    func close(_ fd: Int32)
    /// VIDIOC_QUERYCAP
    func queryCapability(_ fd: Int32, _ capability: inout v4l2_capability) -> Int32
    /// VIDIOC_ENUM_FMT (-EINVAL past the last format)
    func enumerateFormat(_ fd: Int32, _ description: inout v4l2_fmtdesc) -> Int32
    /// VIDIOC_S_FMT (the driver adjusts the structure to what it will deliver)
    func setFormat(_ fd: Int32, _ format: inout v4l2_format) -> Int32
    /// VIDIOC_G_PARM
    func getParameters(_ fd: Int32, _ parameters: inout v4l2_streamparm) -> Int32
    /// VIDIOC_S_PARM
    func setParameters(_ fd: Int32, _ parameters: inout v4l2_streamparm) -> Int32
    /// VIDIOC_REQBUFS
    func requestBuffers(_ fd: Int32, _ request: inout v4l2_requestbuffers) -> Int32
    /// VIDIOC_QUERYBUF
    func queryBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32
    /// mmap(2) of a buffer at the offset VIDIOC_QUERYBUF gave; the mapping or -errno.
    func map(_ fd: Int32, length: Int, offset: UInt32) -> Result<UnsafeMutableRawPointer, V4L2Errno>
    func unmap(_ pointer: UnsafeMutableRawPointer, length: Int)
    /// VIDIOC_QBUF
    func queueBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32
    /// VIDIOC_DQBUF (-EAGAIN: nothing ready on a non-blocking descriptor)
    func dequeueBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32
    /// VIDIOC_STREAMON / VIDIOC_STREAMOFF
    func streamOn(_ fd: Int32) -> Int32
    func streamOff(_ fd: Int32) -> Int32
    /// poll(2) for a filled buffer: 1 ready (or an error to collect with DQBUF), 0 timeout.
    func poll(_ fd: Int32, timeoutMilliseconds: Int32) -> Int32
}

/// An errno value as a typed error (for `Result`).
public struct V4L2Errno: Error, Equatable, Sendable {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
}

/// The real thing: libv4l2 through the CV4L2 shim, conversion off.
public final class LinuxV4L2Driver: V4L2Driver {
    public static let shared = LinuxV4L2Driver()
    public init() {}

    public func open(_ path: String) -> Int32 { m2v_open(path) }
    public func close(_ fd: Int32) { m2v_close(fd) }
    public func queryCapability(_ fd: Int32, _ capability: inout v4l2_capability) -> Int32 {
        m2v_querycap(fd, &capability)
    }
    public func enumerateFormat(_ fd: Int32, _ description: inout v4l2_fmtdesc) -> Int32 {
        m2v_enum_fmt(fd, &description)
    }
    public func setFormat(_ fd: Int32, _ format: inout v4l2_format) -> Int32 { m2v_s_fmt(fd, &format) }
    public func getParameters(_ fd: Int32, _ parameters: inout v4l2_streamparm) -> Int32 {
        m2v_g_parm(fd, &parameters)
    }
    public func setParameters(_ fd: Int32, _ parameters: inout v4l2_streamparm) -> Int32 {
        m2v_s_parm(fd, &parameters)
    }
    public func requestBuffers(_ fd: Int32, _ request: inout v4l2_requestbuffers) -> Int32 {
        m2v_reqbufs(fd, &request)
    }
    public func queryBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32 { m2v_querybuf(fd, &buffer) }
    public func map(_ fd: Int32, length: Int, offset: UInt32) -> Result<UnsafeMutableRawPointer, V4L2Errno> {
        var error: Int32 = 0
        guard let pointer = m2v_mmap(fd, length, offset, &error) else { return .failure(V4L2Errno(error)) }
        return .success(pointer)
    }
    public func unmap(_ pointer: UnsafeMutableRawPointer, length: Int) { m2v_munmap(pointer, length) }
    public func queueBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32 { m2v_qbuf(fd, &buffer) }
    public func dequeueBuffer(_ fd: Int32, _ buffer: inout v4l2_buffer) -> Int32 { m2v_dqbuf(fd, &buffer) }
    public func streamOn(_ fd: Int32) -> Int32 { m2v_streamon(fd) }
    public func streamOff(_ fd: Int32) -> Int32 { m2v_streamoff(fd) }
    public func poll(_ fd: Int32, timeoutMilliseconds: Int32) -> Int32 { m2v_poll(fd, timeoutMilliseconds) }
}

/// A V4L2 failure: `camera /dev/video0: VIDIOC_DQBUF: No such device (ENODEV)`.
public struct V4L2Error: Error, CustomStringConvertible, Sendable, Equatable {
    public let device: String
    /// The system call or ioctl ("open", "VIDIOC_S_FMT"), or the step that found the problem.
    public let call: String
    /// errno; 0 when the device answered but cannot do what was asked.
    public let code: Int32
    public let detail: String

    public init(device: String, call: String, code: Int32 = 0, detail: String = "") {
        self.device = device
        self.call = call
        self.code = code
        self.detail = detail
    }

    public var description: String {
        var text = "camera \(device): \(call): "
        if code != 0 {
            text += String(cString: strerror(code))
            if let name = V4L2Error.errnoNames[code] { text += " (\(name))" }
            if !detail.isEmpty { text += "; " }
        }
        return text + detail
    }

    /// The device went away or broke (unplugged, driver error, not there yet, in use): closing
    /// it and opening it again later may work. Otherwise the device cannot do what the
    /// configuration asks (not a capture device, no usable format), which reopening will not fix.
    public var isTransient: Bool {
        code != 0 && ![EINVAL, ENOTTY, EACCES, EPERM, ENOTDIR, EISDIR].contains(code)
    }

    static let errnoNames: [Int32: String] = [
        ENODEV: "ENODEV", EIO: "EIO", ENXIO: "ENXIO", ENOENT: "ENOENT", EBUSY: "EBUSY", EAGAIN: "EAGAIN",
        EINVAL: "EINVAL", ENOTTY: "ENOTTY", EACCES: "EACCES", EPERM: "EPERM", ENOMEM: "ENOMEM", EPIPE: "EPIPE",
    ]
}
