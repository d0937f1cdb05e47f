import CV4L2
import Foundation
import Testing
import V4L2Testing
@testable import Video

/// V4L2 capture against the scripted fake device (negotiation order, error paths) and the
/// pixel conversions against the ffmpeg CLI. The real driver (vivid) is exercised by
/// scripts/test-vivid.sh in a VM.
@Suite struct V4L2CaptureTests {
    static let request = V4L2Capture.Request(width: 64, height: 48, fps: 10)

    @Test func negotiatesFormatThenRateThenBuffers() throws {
        let driver = ScriptedV4L2Driver()
        let capture = try V4L2Capture(device: "/dev/video9", request: Self.request, driver: driver)
        #expect(capture.layout == V4L2FrameLayout(format: .yuyv, width: 64, height: 48, bytesPerLine: 128, sizeImage: 6144))
        #expect(capture.fps == 10)
        #expect(capture.card == "scripted camera")
        #expect(driver.callLog == ["open /dev/video9", "VIDIOC_QUERYCAP", "VIDIOC_S_FMT 64x48 YUYV",
                                   "VIDIOC_S_PARM 1000/10000", "VIDIOC_REQBUFS 4", "VIDIOC_STREAMON"])
        #expect(driver.buffersMapped == 4 && driver.buffersQueued == 4)
        capture.close()
        capture.close()
        #expect(driver.descriptorsOpen == 0 && driver.buffersMapped == 0)
    }

    @Test func takesWhatTheDriverAdjustsTo() throws {
        let driver = ScriptedV4L2Driver(formats: [.nv12, .mjpeg])
        driver.maxSize = (320, 240)
        driver.supportsFrameInterval = false
        let capture = try V4L2Capture(device: "/dev/video9", request: .init(width: 1921, height: 1081, fps: 29.97),
                                      driver: driver)
        #expect(capture.layout.format == .nv12) // YUYV not offered: the next preferred
        #expect(capture.layout.width == 320 && capture.layout.height == 240)
        #expect(capture.fps == 29.97) // no frame-interval control: the request stands
    }

    @Test func refusesWhatTheDeviceCannotDoAndClosesIt() {
        let driver = ScriptedV4L2Driver(formats: [.yuyv, .nv12])
        let format = #expect(throws: V4L2Error.self) {
            try V4L2Capture(device: "/dev/video9", request: .init(width: 64, height: 48, fps: 10, format: .mjpeg),
                            driver: driver)
        }
        #expect(format?.description == "camera /dev/video9: VIDIOC_ENUM_FMT: format MJPG is not offered; the device has YUYV, NV12")
        #expect(format?.isTransient == false)

        driver.isCapture = false
        let output = #expect(throws: V4L2Error.self) {
            try V4L2Capture(device: "/dev/video9", request: Self.request, driver: driver)
        }
        #expect(output?.description.contains("not a single-planar video capture device") == true)
        #expect(driver.descriptorsOpen == 0 && driver.buffersMapped == 0)
    }

    @Test func missingDeviceIsTransient() {
        let driver = ScriptedV4L2Driver()
        driver.openResults = [-ENOENT]
        let error = #expect(throws: V4L2Error.self) {
            try V4L2Capture(device: "/dev/video9", request: Self.request, driver: driver)
        }
        #expect(error?.description == "camera /dev/video9: open: No such file or directory (ENOENT)")
        #expect(error?.isTransient == true)
    }

    @Test func streamsThroughEAGAINErrorFlagsAndGapsUntilENODEV() throws {
        // Frames are decoded on demand from the held buffer (skipped frames cost nothing).
        let driver = ScriptedV4L2Driver()
        driver.steps = [.frame, .again, .flaggedError, .frame, .skip(2), .frame, .fail(ENODEV)]
        let capture = try V4L2Capture(device: "/dev/video9", request: Self.request, driver: driver)
        var seen: [String] = []
        while true {
            let next: V4L2Capture.Next
            do {
                next = try capture.next(timeoutMilliseconds: 50)
            } catch {
                seen.append("error \(error)")
                break
            }
            switch next {
            case .frame(let frame):
                // The buffer stays with us until the next call; only then does it go back.
                #expect(driver.buffersQueued == 3)
                // Grey: R = G = B from the luma the fake wrote (BT.601 limited range), within
                // swscale's fixed-point rounding (2 levels).
                let image = try capture.decodeHeld(sequence: frame.sequence).get()
                let expected = Double(ScriptedV4L2Driver.luma(sequence: frame.sequence)) - 16
                #expect(abs(Double(image.rgb[0]) - expected * 255 / 219) <= 2)
                #expect(image.width == 64 && image.height == 48 && image.index == Int(frame.sequence))
                #expect(frame.monotonic != nil)
                #expect(throws: V4L2FrameDecoder.DecodeFailure.self) { try capture.decodeHeld(sequence: frame.sequence &+ 1).get() }
                seen.append("frame \(frame.sequence)")
            case .timeout:
                seen.append("timeout")
            case .corrupt(let sequence, let reason):
                seen.append("corrupt \(sequence): \(reason)")
            }
            if case .frame = next {} else {
                #expect(driver.buffersQueued == 4, "every dequeued buffer goes back to the driver")
            }
        }
        #expect(seen == ["frame 0", "timeout", "corrupt 1: driver flagged the buffer V4L2_BUF_FLAG_ERROR", "frame 2",
                         "timeout", "frame 5",
                         "error camera /dev/video9: VIDIOC_DQBUF: No such device (ENODEV)"])
        capture.close()
        #expect(driver.descriptorsOpen == 0 && driver.buffersMapped == 0)
    }

    @Test func idleDeviceTimesOut() throws {
        let driver = ScriptedV4L2Driver()
        let capture = try V4L2Capture(device: "/dev/video9", request: Self.request, driver: driver)
        guard case .timeout = try capture.next(timeoutMilliseconds: 5) else {
            Issue.record("expected a timeout")
            return
        }
    }
}

/// The raw formats and MJPEG decode like the ffmpeg CLI decodes the same bytes.
@Suite struct V4L2FrameDecoderTests {
    /// One 240×320 frame of the phone fixture, upright, as the CLI writes it in `pixelFormat`.
    static func cli(_ arguments: [String]) throws -> [UInt8] {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-v4l2-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ffmpeg", "-v", "error", "-y"] + arguments + [out.path]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CLIError(arguments: arguments) }
        return [UInt8](try Data(contentsOf: out))
    }

    struct CLIError: Error { let arguments: [String] }

    static let source = ["-i", fixture("phone_h264_rot90.mp4"), "-frames:v", "1"]

    static func rawToRGB(_ bytes: [UInt8], pixelFormat: String) throws -> [UInt8] {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-raw-\(UUID().uuidString)")
        try Data(bytes).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        return try cli(["-f", "rawvideo", "-pix_fmt", pixelFormat, "-s", "240x320", "-i", input.path,
                        "-pix_fmt", "rgb24", "-f", "rawvideo"])
    }

    static func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
        zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
    }

    @Test(arguments: [("yuyv422", V4L2PixelFormat.yuyv), ("nv12", V4L2PixelFormat.nv12)])
    func rawFormatMatchesTheCLI(pixelFormat: String, format: V4L2PixelFormat) throws {
        let raw = try Self.cli(Self.source + ["-f", "rawvideo", "-pix_fmt", pixelFormat])
        let expected = try Self.rawToRGB(raw, pixelFormat: pixelFormat)
        // The driver's rows may be padded; the decoder must honour bytesperline.
        let width = 240, height = 320, pad = 32
        let rowBytes = format == .yuyv ? width * 2 : width
        let rows = format == .yuyv ? height : height * 3 / 2
        var padded: [UInt8] = []
        for row in 0..<rows {
            padded += raw[(row * rowBytes)..<((row + 1) * rowBytes)]
            padded += [UInt8](repeating: 0xEE, count: pad)
        }
        let layout = V4L2FrameLayout(format: format, width: width, height: height, bytesPerLine: rowBytes + pad,
                                     sizeImage: padded.count)
        let decoded = try padded.withUnsafeBytes {
            try V4L2FrameDecoder(layout: layout).decode($0, sequence: 7, timestamp: 1.5).get()
        }
        #expect(decoded.width == width && decoded.height == height && decoded.index == 7)
        #expect(decoded.rgb.count == expected.count)
        // Same swscale path and flags as the CLI: equal bytes.
        #expect(Self.maxDifference(decoded.rgb, expected) == 0, "\(pixelFormat)")
    }

    @Test func shortBufferIsAFailureNotACrash() {
        let layout = V4L2FrameLayout(format: .yuyv, width: 64, height: 48, bytesPerLine: 128, sizeImage: 6144)
        let result = [UInt8](repeating: 0, count: 1000).withUnsafeBytes {
            V4L2FrameDecoder(layout: layout).decode($0, sequence: 0, timestamp: 0)
        }
        guard case .failure(let why) = result else { Issue.record("short buffer decoded"); return }
        #expect(why.description == "buffer holds 1000 bytes, a 64x48 YUYV frame needs 6144")
    }

    @Test func mjpegMatchesTheCLI() throws {
        let jpeg = try Self.cli(Self.source + ["-c:v", "mjpeg", "-q:v", "3", "-f", "mjpeg"])
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-\(UUID().uuidString).jpg")
        try Data(jpeg).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        let expected = try Self.cli(["-i", input.path, "-pix_fmt", "rgb24", "-f", "rawvideo"])
        let decoder = V4L2FrameDecoder(layout: .init(format: .mjpeg, width: 240, height: 320, bytesPerLine: 0,
                                                     sizeImage: 1 << 20))
        // A camera's MJPEG buffer is bigger than the JPEG: bytesused is what counts.
        let decoded = try jpeg.withUnsafeBytes { try decoder.decode($0, sequence: 0, timestamp: 0).get() }
        #expect(decoded.width == 240 && decoded.height == 320)
        #expect(Self.maxDifference(decoded.rgb, expected) == 0)

        // A broken JPEG (a camera glitch) fails that frame, and the decoder keeps working.
        let broken = Array(jpeg.prefix(200)) + [UInt8](repeating: 0x55, count: 300)
        let failure = broken.withUnsafeBytes { decoder.decode($0, sequence: 1, timestamp: 0) }
        if case .success(let image) = failure {
            // Some decoders conceal damage instead of failing; the frame must still be whole.
            #expect(image.width == 240 && image.height == 320)
        }
        let again = try jpeg.withUnsafeBytes { try decoder.decode($0, sequence: 2, timestamp: 0).get() }
        #expect(Self.maxDifference(again.rgb, expected) == 0)
        let garbage = [UInt8](repeating: 0x55, count: 300).withUnsafeBytes { decoder.decode($0, sequence: 3, timestamp: 0) }
        guard case .failure(let why) = garbage else { Issue.record("garbage decoded"); return }
        #expect(why.description.hasPrefix("JPEG"))
    }
}
