import Foundation
import Testing
import SafeTensors
import Ops
@testable import M2Model

/// The CLIP towers against transformers' CLIPModel on the same weights. Fixtures come from
/// scripts/fixtures/make_clip_fixture.py (a tiny random CLIP with every weight perturbed,
/// stored in f32, and the same weights rounded to f16). Run with the kernel variant that
/// M2CLIP_KERNELS forces (scripts/test.sh runs this suite once per x86 variant).
///
/// Tolerance (fp32 engine vs fp32 PyTorch): max abs 1e-4 on embeddings and hidden states of
/// magnitude ~1, cosine ≥ 0.99999.
@Suite struct ParityTests {
    static let tolerance: Float = 1e-4

    @Test(arguments: ["tiny-clip", "tiny-clip-f16"])
    func imageTowerMatchesTransformers(fixture: String) throws {
        let context = try ComputeContext(threads: 2)
        let model = try CLIPModel(directory: fixturePath(fixture), context: context)
        let reference = try SafeTensorsFile(path: fixturePath("\(fixture)/reference.safetensors"))
        let pixels = try reference.floats("pixel_values")
        let shape = reference.info("pixel_values")!.shape
        let frames = shape[0]
        let input = Tensor(shape: shape, values: pixels)
        let vision = try #require(model.vision)

        let hidden = vision.hiddenStates(pixels: input.data, frames: frames, context: context)
        expectClose(hidden.array, try reference.floats("vision_last_hidden_state"),
                    absTol: Self.tolerance, "\(fixture) vision_last_hidden_state")
        let embeds = vision(pixels: input.data, frames: frames, context: context)
        expectClose(embeds.array, try reference.floats("image_embeds"), absTol: Self.tolerance,
                    "\(fixture) image_embeds")
        expectClose([exp(model.logitScale)], try reference.floats("logit_scale_exp"), absTol: 1e-5,
                    "\(fixture) logit_scale")
    }

    @Test(arguments: ["tiny-clip", "tiny-clip-f16"])
    func textTowerMatchesTransformers(fixture: String) throws {
        let context = try ComputeContext(threads: 2)
        let model = try CLIPModel(directory: fixturePath(fixture), towers: .text, context: context)
        let reference = try SafeTensorsFile(path: fixturePath("\(fixture)/reference.safetensors"))
        let text = try #require(model.text)
        var checked = 0
        for i in 0..<16 where reference.contains("input_ids.\(i)") {
            let ids = try reference.int64s("input_ids.\(i)").map { Int32($0) }
            let embed = try text(ids: ids, context: context)
            expectClose(embed, try reference.floats("text_embeds.\(i)"), absTol: Self.tolerance,
                        "\(fixture) text_embeds.\(i) (\(ids.count) tokens)")
            checked += 1
        }
        #expect(checked >= 4, "fixture \(fixture) holds \(checked) texts")
    }

    @Test func textRejectsBadInput() throws {
        let context = try ComputeContext(threads: 1)
        let model = try CLIPModel(directory: fixturePath("tiny-clip"), towers: .text, context: context)
        let text = try #require(model.text)
        #expect(throws: TextInputError.self) { try text(ids: [], context: context) }
        #expect(throws: TextInputError.self) { try text(ids: [998, 5000, 999], context: context) }
        #expect(throws: TextInputError.self) { try text(ids: [Int32](repeating: 3, count: 78), context: context) }
    }

    /// The same answer whatever the thread count: work is split, never reordered within a dot product.
    @Test func threadCountDoesNotChangeResults() throws {
        let one = try ComputeContext(threads: 1), two = try ComputeContext(threads: 2)
        let a = try CLIPModel(directory: fixturePath("tiny-clip"), towers: .vision, context: one)
        let b = try CLIPModel(directory: fixturePath("tiny-clip"), towers: .vision, context: two)
        let reference = try SafeTensorsFile(path: fixturePath("tiny-clip/reference.safetensors"))
        let shape = reference.info("pixel_values")!.shape
        let input = Tensor(shape: shape, values: try reference.floats("pixel_values"))
        let x = a.vision!(pixels: input.data, frames: shape[0], context: one).array
        let y = b.vision!(pixels: input.data, frames: shape[0], context: two).array
        #expect(x == y)
    }
}
