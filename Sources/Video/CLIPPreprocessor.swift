import CKernels
import Ops

/// CLIP's image preprocessing on decoded frames (spec §1), as torchvision does it on PIL
/// images: Resize(size, BICUBIC) so the shorter side is `size` (the longer one becomes
/// ⌊size · long / short⌋), CenterCrop(size) (offset round((resized − size) / 2), half to
/// even, like Python's round), ToTensor, Normalize(mean, std).
///
/// The resize is Pillow's, bit-exact: separable antialiased bicubic (a = −0.5) rounded to
/// uint8 after each pass (CKernels m2k_resample_*). Only the pixels the crop keeps are
/// computed. Note: Hugging Face's CLIPImageProcessor floors the crop offset instead, which
/// moves the crop one pixel when the margin is odd.
public struct CLIPPreprocessor: Sendable {
    public static let clipMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let clipStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// Which square along the longer side: left/top, centre, right/bottom.
    public enum Crop: Int, Sendable, CaseIterable {
        case first, center, last
    }

    /// Output side in pixels (the model's image size).
    public let size: Int
    public let mean: [Float]
    public let std: [Float]

    public init(size: Int = 224, mean: [Float] = CLIPPreprocessor.clipMean,
                std: [Float] = CLIPPreprocessor.clipStd) {
        precondition(size >= 1, "CLIP preprocessing: size \(size)")
        precondition(mean.count == 3 && std.count == 3 && std.allSatisfy { $0 > 0 },
                     "CLIP preprocessing: mean \(mean) and std \(std) need 3 values, std > 0")
        self.size = size
        self.mean = mean
        self.std = std
    }

    /// The size a width × height image is resized to (torchvision's Resize(int)).
    public func resizedSize(width: Int, height: Int) -> (width: Int, height: Int) {
        resizedSize(width: width, height: height, shortSide: size)
    }

    /// The size a width × height image is resized to when its shorter side becomes
    /// `shortSide` (the longer one ⌊shortSide · long / short⌋), as torchvision's Resize(int).
    public func resizedSize(width: Int, height: Int, shortSide: Int) -> (width: Int, height: Int) {
        if width <= height {
            return (shortSide, Int(Double(shortSide) * Double(height) / Double(width)))
        }
        return (Int(Double(shortSide) * Double(width) / Double(height)), shortSide)
    }

    /// Top-left corner of the crop in the resized image.
    public func cropOrigin(resizedWidth: Int, resizedHeight: Int, crop: Crop) -> (x: Int, y: Int) {
        func offset(_ length: Int, _ wanted: Crop) -> Int {
            switch wanted {
            case .first: return 0
            case .center: return Int((Double(length - size) / 2).rounded(.toNearestOrEven))
            case .last: return length - size
            }
        }
        // Only the longer side has a choice; the shorter one is exactly `size`.
        return resizedWidth >= resizedHeight
            ? (offset(resizedWidth, crop), offset(resizedHeight, .center))
            : (offset(resizedWidth, .center), offset(resizedHeight, crop))
    }

    /// (T, 3, size, size): each frame resized, cropped and normalised, channels first.
    public func tensor(_ frames: [RGBFrame], crop: Crop = .center) -> Tensor {
        views(frames, crops: [crop])[0]
    }

    /// One (T, 3, size, size) tensor per crop (test-time multi-view: `Crop.allCases` gives
    /// the 3 spatial crops). Each frame is resized once for all crops.
    public func views(_ frames: [RGBFrame], crops: [Crop]) -> [Tensor] {
        render(frames, count: crops.count, flip: false) { width, height in
            ResizePlan(width: width, height: height, crops: crops, self)
        }
    }

    /// One (T, 3, size, size) tensor per origin, for train-time augmentation and any number of
    /// test crops: each frame resized so its shorter side is `shortSide` (≥ size; Pillow's
    /// bicubic as above), the size × size square whose top-left corner is `origin` in the
    /// resized image cut out, mirrored left–right when `flip` (after the crop, as
    /// mmaction2's Flip follows RandomCrop), normalised. With shortSide = size and the origin
    /// `cropOrigin(…, crop:)` gives, it equals `views(frames, crops:)` exactly. All frames must
    /// have one size; every origin must keep the square inside the resized image.
    public func views(_ frames: [RGBFrame], shortSide: Int, origins: [(x: Int, y: Int)],
                      flip: Bool = false) -> [Tensor] {
        precondition(shortSide >= size, "CLIP preprocessing: short side \(shortSide) is smaller than the crop \(size)")
        return render(frames, count: origins.count, flip: flip) { width, height in
            let resized = resizedSize(width: width, height: height, shortSide: shortSide)
            for origin in origins {
                precondition(origin.x >= 0 && origin.y >= 0 && origin.x + size <= resized.width
                             && origin.y + size <= resized.height,
                             "CLIP preprocessing: crop at (\(origin.x), \(origin.y)) leaves the \(resized.width)x\(resized.height) image")
            }
            return ResizePlan(width: width, height: height, resized: resized, origins: origins, size: size)
        }
    }

    /// (T, 3, size, size) per crop of `plan(width, height)`, one plan per distinct frame size.
    private func render(_ frames: [RGBFrame], count: Int, flip: Bool,
                        plan makePlan: (Int, Int) -> ResizePlan) -> [Tensor] {
        let plane = size * size
        let outputs = (0..<count).map { _ in Tensor(shape: [frames.count, 3, size, size]) }
        var plans: [SizeKey: ResizePlan] = [:]
        for (t, frame) in frames.enumerated() {
            let key = SizeKey(width: frame.width, height: frame.height)
            let plan = plans[key] ?? makePlan(frame.width, frame.height)
            plans[key] = plan
            let window = frame.rgb.withUnsafeBufferPointer { plan.resize($0.baseAddress!) }
            window.withUnsafeBufferPointer { pixels in
                for (c, origin) in plan.cropOrigins.enumerated() {
                    let start = pixels.baseAddress! + (origin.y * plan.windowWidth + origin.x) * 3
                    let out = outputs[c].data + t * 3 * plane // (3, size, size)
                    m2k_rgb8_to_chw_normalized(start, plan.windowWidth * 3, Int32(size), Int32(size),
                                               mean, std, out)
                    if flip {
                        for row in 0..<(3 * size) {
                            var line = UnsafeMutableBufferPointer(start: out + row * size, count: size)
                            line.reverse()
                        }
                    }
                }
            }
        }
        return outputs
    }

    /// The resized and cropped image before normalisation: (size, size, 3) uint8, what
    /// Pillow's resize + crop give. For tests and for saving what the model sees.
    public func resizedCrop(rgb: [UInt8], width: Int, height: Int, crop: Crop = .center) -> [UInt8] {
        precondition(rgb.count == width * height * 3, "\(rgb.count) bytes for \(width)x\(height) RGB")
        let plan = ResizePlan(width: width, height: height, crops: [crop], self)
        let window = rgb.withUnsafeBufferPointer { plan.resize($0.baseAddress!) }
        let origin = plan.cropOrigins[0]
        var out = [UInt8](repeating: 0, count: size * size * 3)
        for y in 0..<size {
            let from = ((origin.y + y) * plan.windowWidth + origin.x) * 3
            out[(y * size * 3)..<((y + 1) * size * 3)] = window[from..<(from + size * 3)]
        }
        return out
    }
}

private struct SizeKey: Hashable {
    let width: Int, height: Int
}

/// Coefficient tables for one input size: the window of the resized image covering all
/// requested crops, and where each crop sits in it.
private struct ResizePlan {
    let inWidth: Int, inHeight: Int
    let windowWidth: Int, windowHeight: Int
    let xTaps: Int32, yTaps: Int32
    let xBounds: [Int32], xCoeffs: [Int32]
    let yBounds: [Int32], yCoeffs: [Int32]
    /// Input rows [firstRow, lastRow) that the window needs.
    let firstRow: Int, lastRow: Int
    let cropOrigins: [(x: Int, y: Int)]

    init(width: Int, height: Int, crops: [CLIPPreprocessor.Crop], _ p: CLIPPreprocessor) {
        let resized = p.resizedSize(width: width, height: height)
        self.init(width: width, height: height, resized: resized, origins: crops.map {
            p.cropOrigin(resizedWidth: resized.width, resizedHeight: resized.height, crop: $0)
        }, size: p.size)
    }

    /// The plan for size × size squares at `origins` of the image resized to `resized`.
    init(width: Int, height: Int, resized: (width: Int, height: Int), origins: [(x: Int, y: Int)], size: Int) {
        precondition(width >= 1 && height >= 1, "CLIP preprocessing: a \(width)x\(height) frame")
        precondition(!origins.isEmpty, "CLIP preprocessing: no crop asked for")
        inWidth = width
        inHeight = height
        let x0 = origins.map(\.x).min()!, y0 = origins.map(\.y).min()!
        windowWidth = origins.map(\.x).max()! + size - x0
        windowHeight = origins.map(\.y).max()! + size - y0
        cropOrigins = origins.map { ($0.x - x0, $0.y - y0) }

        xTaps = m2k_bicubic_taps(Int32(width), Int32(resized.width))
        yTaps = m2k_bicubic_taps(Int32(height), Int32(resized.height))
        var xb = [Int32](repeating: 0, count: 2 * windowWidth)
        var xc = [Int32](repeating: 0, count: windowWidth * Int(xTaps))
        m2k_bicubic_coeffs(Int32(width), Int32(resized.width), Int32(x0), Int32(windowWidth), &xb, &xc)
        var yb = [Int32](repeating: 0, count: 2 * windowHeight)
        var yc = [Int32](repeating: 0, count: windowHeight * Int(yTaps))
        m2k_bicubic_coeffs(Int32(height), Int32(resized.height), Int32(y0), Int32(windowHeight), &yb, &yc)
        firstRow = Int(yb[0])
        lastRow = Int(yb[2 * windowHeight - 2] + yb[2 * windowHeight - 1])
        for i in 0..<windowHeight { yb[2 * i] -= Int32(firstRow) }
        xBounds = xb
        xCoeffs = xc
        yBounds = yb
        yCoeffs = yc
    }

    /// The window of the resized image, (windowHeight, windowWidth, 3) uint8.
    func resize(_ rgb: UnsafePointer<UInt8>) -> [UInt8] {
        let rows = lastRow - firstRow
        var horizontal = [UInt8](repeating: 0, count: rows * windowWidth * 3)
        var rowScratch = [UInt8](repeating: 0, count: m2k_resample_rows_scratch(Int32(inWidth), Int32(windowWidth), xTaps))
        m2k_resample_rows_rgb8(rgb + firstRow * inWidth * 3, inWidth * 3, Int32(inWidth), rows,
                               &horizontal, windowWidth * 3, Int32(windowWidth), xTaps,
                               xBounds, xCoeffs, &rowScratch)
        var out = [UInt8](repeating: 0, count: windowHeight * windowWidth * 3)
        var columnScratch = [Int32](repeating: 0, count: windowWidth * 3)
        m2k_resample_cols_rgb8(horizontal, windowWidth * 3, Int32(windowWidth), &out, windowWidth * 3,
                               Int32(windowHeight), yTaps, yBounds, yCoeffs, &columnScratch)
        return out
    }
}
