#if canImport(Glibc)
import Glibc
#endif

/// One decoded frame, upright (display rotation applied), as packed 8-bit RGB.
public struct RGBFrame: Sendable {
    /// Displayed size in pixels.
    public let width: Int
    public let height: Int
    /// (height, width, 3) bytes, row-major, R G B per pixel, no row padding.
    public var rgb: [UInt8]
    /// The display index that was asked for.
    public let index: Int
    /// Presentation time of the delivered frame in seconds from the first frame.
    public let timestamp: Double
    /// The display index of the frame actually delivered, from its timestamp at the average
    /// frame rate. Differs from `index` when the file ends early (see `clamped`) or, for
    /// variable frame rate, when no frame starts within half a frame of the requested time.
    public let sourceIndex: Int
    /// The file ends before `index`: the last decodable frame was delivered instead.
    public let clamped: Bool

    public init(width: Int, height: Int, rgb: [UInt8], index: Int, timestamp: Double,
                sourceIndex: Int, clamped: Bool) {
        precondition(rgb.count == width * height * 3, "\(rgb.count) bytes for \(width)x\(height) RGB")
        self.width = width
        self.height = height
        self.rgb = rgb
        self.index = index
        self.timestamp = timestamp
        self.sourceIndex = sourceIndex
        self.clamped = clamped
    }
}

/// Where frames come from: a file now, a camera later. Indices count displayed frames at the
/// source's average frame rate.
public protocol FrameSource: AnyObject {
    /// Frames in the source; an estimate when `frameCountIsEstimate`.
    var frameCount: Int { get }
    var frameCountIsEstimate: Bool { get }
    var fps: Double { get }
    /// The frames with these display indices, in the order asked (repeats allowed).
    func frames(at indices: [Int]) throws -> [RGBFrame]
}

extension RGBFrame {
    /// Peak signal-to-noise ratio against a frame of the same size, in dB over all three
    /// channels (peak 255; infinity when identical): how close a lossy copy (a JPEG snapshot
    /// decoded again) is to the frame it was made from.
    public func psnr(against other: RGBFrame) -> Double {
        precondition(width == other.width && height == other.height,
                     "PSNR of \(width)x\(height) against \(other.width)x\(other.height)")
        var squares = 0.0
        for (a, b) in zip(rgb, other.rgb) {
            let d = Double(a) - Double(b)
            squares += d * d
        }
        let mse = squares / Double(max(rgb.count, 1))
        return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
    }
}
