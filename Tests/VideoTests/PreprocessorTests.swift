import Foundation
import Testing
import Ops
@testable import Video

/// CLIP preprocessing against Pillow (resize BICUBIC) + torchvision's crop and normalisation.
@Suite struct PreprocessorTests {
    /// make_video_fixtures.py's synthetic_pixel: high frequencies that saturate, so both the
    /// antialiasing filter and the uint8 clipping are exercised.
    static func syntheticImage(width: Int, height: Int) -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<3 {
                    let v = x * x + 3 * y * y + 7 * x * y + 50 * c * (x + y) + ((x / 7) ^ (y / 5)) * 17
                    rgb[(y * width + x) * 3 + c] = UInt8(v % 256)
                }
            }
        }
        return rgb
    }

    /// Pillow's resize is reproduced bit for bit: a 6.4× reduction (1280x720 → 199x112, crop
    /// offset 43.5 rounds to 44) and an upscale of a portrait image (30x40 → 64x85, offset 10.5
    /// rounds to 10).
    @Test(arguments: [(1280, 720, 112), (30, 40, 64)])
    func resizeIsBitExactWithPillow(width: Int, height: Int, size: Int) throws {
        let preprocessor = CLIPPreprocessor(size: size)
        let ours = preprocessor.resizedCrop(rgb: Self.syntheticImage(width: width, height: height),
                                            width: width, height: height)
        let pillow = try fixtureBytes("pil/synthetic_\(width)x\(height)_s\(size).u8")
        #expect(ours.count == pillow.count)
        let diffs = zip(ours, pillow).map { abs(Int($0) - Int($1)) }
        let mismatches = diffs.filter { $0 != 0 }.count
        print("[video] Pillow resize \(width)x\(height) → \(size): max |diff| \(diffs.max() ?? 0), \(mismatches) of \(diffs.count) bytes differ")
        #expect(mismatches == 0, "\(width)x\(height) → \(size): \(mismatches) bytes differ from Pillow, max \(diffs.max() ?? 0)")
    }

    /// Decode (ours) + preprocess (ours) against CLI decode + Pillow + torchvision normalise.
    @Test func phoneFrameMatchesPillowPipeline() throws {
        let video = try VideoFile(path: fixture("phone_h264_rot90.mp4"))
        let frame = try video.frames(at: [7])[0]
        let tensor = CLIPPreprocessor().tensor([frame])
        #expect(tensor.shape == [1, 3, 224, 224])
        let reference = littleEndianUInt16(try fixtureBytes("pil/phone_f7_s224_stride2.f16"))
            .map { Float(Float16(bitPattern: $0)) }
        #expect(reference.count == 3 * 112 * 112)
        var worst: Float = 0
        for c in 0..<3 {
            for y in 0..<112 {
                for x in 0..<112 {
                    let ours = tensor.data[(c * 224 + 2 * y) * 224 + 2 * x]
                    worst = max(worst, abs(ours - reference[(c * 112 + y) * 112 + x]))
                }
            }
        }
        // The reference is float16: half an ulp at |x| ≤ 2.2 is under 1e-3.
        print("[video] phone frame 7 → (3, 224, 224) vs Pillow pipeline: max |diff| \(worst)")
        #expect(worst <= 2e-3, "max |diff| \(worst) against Pillow + torchvision")
    }

    @Test func resizeFollowsTorchvision() {
        let p = CLIPPreprocessor()
        #expect(p.resizedSize(width: 1920, height: 1080) == (398, 224))
        #expect(p.resizedSize(width: 240, height: 320) == (224, 298))
        #expect(p.resizedSize(width: 321, height: 179) == (401, 224))
        #expect(p.resizedSize(width: 224, height: 224) == (224, 224))
        #expect(p.cropOrigin(resizedWidth: 398, resizedHeight: 224, crop: .center) == (87, 0))
        #expect(p.cropOrigin(resizedWidth: 399, resizedHeight: 224, crop: .center) == (88, 0))
        #expect(p.cropOrigin(resizedWidth: 397, resizedHeight: 224, crop: .center) == (86, 0))
        #expect(p.cropOrigin(resizedWidth: 398, resizedHeight: 224, crop: .first) == (0, 0))
        #expect(p.cropOrigin(resizedWidth: 398, resizedHeight: 224, crop: .last) == (174, 0))
        #expect(p.cropOrigin(resizedWidth: 224, resizedHeight: 298, crop: .last) == (0, 74))
    }

    /// The three spatial views equal single-crop preprocessing at each position, and the
    /// normalisation is (v / 255 − mean) / std per channel, channels first.
    @Test func threeCropsAndNormalisation() throws {
        let frames = try VideoFile(path: fixture("vp8.webm")).frames(at: [0, 9, 18])
        let p = CLIPPreprocessor(size: 64, mean: [0.5, 0.25, 0.125], std: [0.5, 0.25, 2])
        let views = p.views(frames, crops: CLIPPreprocessor.Crop.allCases)
        #expect(views.count == 3)
        for (crop, view) in zip(CLIPPreprocessor.Crop.allCases, views) {
            #expect(view.shape == [3, 3, 64, 64])
            #expect(view.array == p.tensor(frames, crop: crop).array, "crop \(crop)")
        }
        #expect(views[0].array != views[2].array)
        let pixels = p.resizedCrop(rgb: frames[1].rgb, width: frames[1].width, height: frames[1].height, crop: .last)
        let plane = 64 * 64
        for (c, (mean, std)) in zip([Float(0.5), 0.25, 0.125], [Float(0.5), 0.25, 2]).enumerated() {
            for i in stride(from: 0, to: plane, by: 97) {
                let expected = (Float(pixels[i * 3 + c]) / 255 - mean) / std
                #expect(abs(views[2].data[plane * 3 + c * plane + i] - expected) < 1e-6)
            }
        }
    }

    /// Frames of odd size and both orientations go through without tripping bounds.
    @Test(arguments: [(1, 1), (3, 500), (500, 3), (321, 179), (225, 224), (224, 224)])
    func oddSizes(width: Int, height: Int) {
        let rgb = Self.syntheticImage(width: width, height: height)
        let frame = RGBFrame(width: width, height: height, rgb: rgb, index: 0, timestamp: 0, sourceIndex: 0, clamped: false)
        let tensor = CLIPPreprocessor(size: 32).tensor([frame, frame])
        #expect(tensor.shape == [2, 3, 32, 32])
        #expect(tensor.array.allSatisfy { $0.isFinite && abs($0) < 3 })
    }

    @Test func identitySizeIsACopy() {
        let rgb = Self.syntheticImage(width: 40, height: 40)
        #expect(CLIPPreprocessor(size: 40).resizedCrop(rgb: rgb, width: 40, height: 40) == rgb)
    }
}
