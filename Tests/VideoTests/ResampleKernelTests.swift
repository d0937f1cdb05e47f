import Testing
import CKernels
import Ops

/// The run-time chosen resampling passes (AVX2 where available) against the portable
/// reference build, on random images, including widths too small for the two-tap loads.
@Suite struct ResampleKernelTests {
    @Test(arguments: [(1920, 1080, 398, 224), (320, 240, 298, 224), (1, 7, 3, 20), (2, 2, 9, 9),
                      (5, 3, 2, 1), (641, 359, 64, 36)])
    func dispatchedPassesEqualTheReference(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int) {
        var generator = SplitMix64(seed: UInt64(inWidth * 7919 + inHeight))
        let source = (0..<(inWidth * inHeight * 3)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let xTaps = m2k_bicubic_taps(Int32(inWidth), Int32(outWidth))
        let yTaps = m2k_bicubic_taps(Int32(inHeight), Int32(outHeight))
        var xBounds = [Int32](repeating: 0, count: 2 * outWidth), xCoeffs = [Int32](repeating: 0, count: outWidth * Int(xTaps))
        var yBounds = [Int32](repeating: 0, count: 2 * outHeight), yCoeffs = [Int32](repeating: 0, count: outHeight * Int(yTaps))
        #expect(m2k_bicubic_coeffs(Int32(inWidth), Int32(outWidth), 0, Int32(outWidth), &xBounds, &xCoeffs) == xTaps)
        #expect(m2k_bicubic_coeffs(Int32(inHeight), Int32(outHeight), 0, Int32(outHeight), &yBounds, &yCoeffs) == yTaps)
        // Pillow's weights of each output sample sum to one (2^22 in fixed point), ± rounding.
        for i in 0..<outWidth {
            let sum = xCoeffs[(i * Int(xTaps))..<((i + 1) * Int(xTaps))].reduce(0, +)
            #expect(abs(Int(sum) - (1 << 22)) <= Int(xTaps), "output column \(i): weights sum to \(sum)")
        }
        let scratchBytes = m2k_resample_rows_scratch(Int32(inWidth), Int32(outWidth), xTaps)
        func rows(_ pass: (UnsafePointer<UInt8>, Int, Int32, Int, UnsafeMutablePointer<UInt8>, Int, Int32, Int32,
                           UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafeMutablePointer<UInt8>) -> Void) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: inHeight * outWidth * 3)
            var scratch = [UInt8](repeating: 0, count: scratchBytes)
            pass(source, inWidth * 3, Int32(inWidth), inHeight, &out, outWidth * 3, Int32(outWidth), xTaps,
                 xBounds, xCoeffs, &scratch)
            return out
        }
        let horizontal = rows(m2k_resample_rows_rgb8)
        #expect(horizontal == rows(m2k_ref_resample_rows_rgb8), "rows pass \(inWidth)x\(inHeight) → \(outWidth)")
        func columns(_ pass: (UnsafePointer<UInt8>, Int, Int32, UnsafeMutablePointer<UInt8>, Int, Int32, Int32,
                              UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: outHeight * outWidth * 3)
            var scratch = [Int32](repeating: 0, count: outWidth * 3)
            pass(horizontal, outWidth * 3, Int32(outWidth), &out, outWidth * 3, Int32(outHeight), yTaps,
                 yBounds, yCoeffs, &scratch)
            return out
        }
        #expect(columns(m2k_resample_cols_rgb8) == columns(m2k_ref_resample_cols_rgb8),
                "columns pass \(outWidth)x\(inHeight) → \(outHeight)")
    }

    @Test func rotationsCompose() {
        let width = 5, height = 3
        let source = (0..<(width * height * 3)).map { UInt8($0) }
        func rotate(_ image: [UInt8], _ w: Int, _ h: Int, _ degrees: Int32) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: image.count)
            let outWidth = degrees == 90 || degrees == 270 ? h : w
            m2k_rgb8_rotate(image, w * 3, Int32(w), Int32(h), degrees, &out, outWidth * 3)
            return out
        }
        let once = rotate(source, width, height, 90)
        // The top-left pixel of a clockwise turn is the bottom-left of the source.
        #expect(Array(once[0..<3]) == Array(source[((height - 1) * width) * 3..<((height - 1) * width) * 3 + 3]))
        #expect(rotate(once, height, width, 270) == source)
        #expect(rotate(rotate(once, height, width, 90), width, height, 90) == rotate(source, width, height, 270))
        #expect(rotate(rotate(once, height, width, 90), width, height, 180) == source)
        #expect(rotate(rotate(source, width, height, 180), width, height, 180) == source)
        #expect(rotate(source, width, height, 0) == source)
    }
}
