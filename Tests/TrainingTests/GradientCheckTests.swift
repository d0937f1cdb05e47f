import Foundation
import Testing
import Ops
import SafeTensors
@testable import M2Model
@testable import Training

/// The whole model's gradients against central finite differences of the total loss, on tiny
/// random models (K400 and SSv2 layouts) whose every adapter weight is non-zero, with every
/// loss term on. Each trainable tensor is probed at two random elements.
///
/// Tolerance: |analytic − numeric| ≤ 6e-4 + 3e-2·|numeric| (fp32 forward, h = 2e-3: the
/// difference quotient's round-off is up to ~3e-4 here, measured; median |gradient| ~5e-3).
@Suite(.serialized) struct GradientCheckTests {
    static func modelFile(preset: M2CLIPConfiguration.Preset, in directory: String) throws -> String {
        let context = try ComputeContext(threads: 1)
        let clip = directory + "/clip"
        try RandomCheckpoint.write(configuration: RandomCheckpoint.Preset.tiny.configuration, to: clip, seed: 11)
        let labels = ["riding a bike", "playing guitar", "juggling balls", "riding a horse"]
        let converted = directory + "/fresh.m2c"
        try Conversion.convert(.huggingFace(directory: clip), options: .init(labels: labels, preset: preset, frames: 3),
                               output: converted, context: context)
        // every trainable tensor random (fresh adapters start as the identity: zero convs, zero fc2)
        let file = try SafeTensorsFile(path: converted)
        var rng = SplitMix64(seed: 5)
        let path = directory + "/model.m2c"
        try rewrite(file, to: path) { name, values in
            guard M2CLIPNames.isTrainable(name) else { return nil }
            return values.map { _ in rng.nextNormal() * 0.2 }
        }
        return path
    }

    /// Copies `file` to `path`, replacing the tensors `change` returns values for.
    static func rewrite(_ file: SafeTensorsFile, to path: String,
                        change: (String, [Float]) throws -> [Float]?) throws {
        var writer = SafeTensorsWriter(metadata: file.metadata)
        for name in file.names {
            let info = file.info(name)!
            if info.dtype.isConvertibleToFloat, let values = try change(name, try file.floats(name)) {
                try writer.add(name: name, shape: info.shape, floats: values)
            } else {
                try writer.add(name: name, dtype: info.dtype, shape: info.shape, bytes: try file.bytes(name))
            }
        }
        try writer.write(to: path)
    }

    /// A batch of 3 clips (two share a label, so the KL targets have off-diagonal mass) with
    /// masked prompts and MLM labels.
    static func batch(for trainer: TrainingModel, seed: UInt64) -> TrainingBatch {
        TrainingBatch.synthetic(for: trainer, labels: [0, 2, 0], frames: 3, seed: seed)
    }

    @Test(arguments: [M2CLIPConfiguration.Preset.k400, .ssv2])
    func gradientsMatchFiniteDifferences(preset: M2CLIPConfiguration.Preset) throws {
        let directory = NSTemporaryDirectory() + "m2clip-gradcheck-\(preset.rawValue)-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ComputeContext(threads: 2)
        let path = try Self.modelFile(preset: preset, in: directory)
        let trainer = try TrainingModel(modelFile: path, context: context)
        let batch = Self.batch(for: trainer, seed: 3)
        let terms = trainer.computeGradients(batch, context: context)
        #expect(terms.mlm > 0 && terms.vc > 0 && terms.cmc > 0 && terms.contrastiveV2T > 0 && terms.contrastiveT2V > 0,
                "every loss term on: \(terms)")
        #expect(trainer.mlmWords.count > 0)
        let names = trainer.gradients.names
        #expect(names.contains { $0.hasPrefix("mlm_adapter.") })
        #expect(names.contains { $0.contains(".offset_adapter.") })
        let file = try SafeTensorsFile(path: path)
        var rng = SplitMix64(seed: 9)
        let h: Float = 2e-3
        var failures: [String] = []
        // every gradient before the probes overwrite them
        let gradients = names.map { trainer.gradients.values($0)! }
        for (name, (shape, analytic)) in zip(names, gradients) {
            #expect(shape == file.info(name)?.shape, "\(name): gradient shape \(shape)")
            // the parameter as the trainer holds it is the file's tensor
            let original = trainer.gradients.parameter(name)!
            #expect(original == (try file.floats(name)), "\(name): parameter read back differs from the file")
            for _ in 0..<2 {
                let index = Int(rng.next() % UInt64(analytic.count))
                func loss(_ delta: Float) -> Float {
                    var v = original
                    v[index] += delta
                    trainer.gradients.setParameter(name, v)
                    defer { trainer.gradients.setParameter(name, original) }
                    return trainer.computeGradients(batch, context: context).total
                }
                let numeric = (loss(h) - loss(-h)) / (2 * h)
                let a = analytic[index]
                if abs(a - numeric) > 6e-4 + 3e-2 * abs(numeric) {
                    failures.append("\(name)[\(index)]: analytic \(a), numeric \(numeric)")
                }
            }
        }
        // restoring every probe restored the model: the same step gives the same gradients
        let again = trainer.computeGradients(batch, context: context)
        #expect(again == terms, "the model changed under the probes")
        #expect(failures.isEmpty, "\(preset.rawValue): \(failures.count) of \(2 * names.count) probes off:\n\(failures.joined(separator: "\n"))")
    }

    /// Dropout on the VC head's input (training): the step is still a function of the seed, and
    /// the gradients through the dropped units match finite differences of that function.
    @Test func dropoutGradientsMatchFiniteDifferences() throws {
        let directory = NSTemporaryDirectory() + "m2clip-gradcheck-dropout-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ComputeContext(threads: 2)
        let trainer = try TrainingModel(modelFile: try Self.modelFile(preset: .k400, in: directory), context: context)
        let batch = Self.batch(for: trainer, seed: 4)
        let dropout = Dropout(probability: 0.5, seed: 21)
        let mask = dropout.mask(count: 1000)
        #expect(Set(mask) == [0, 2], "kept units are scaled by 1/(1-p)")
        #expect((350...650).contains(mask.filter { $0 == 0 }.count), "about half dropped")
        let plain = trainer.computeGradients(batch, context: context)
        let dropped = trainer.computeGradients(batch, context: context, dropout: dropout)
        #expect(dropped.vc != plain.vc, "the VC term sees the mask")
        #expect(dropped.cmc == plain.cmc && dropped.contrastiveV2T == plain.contrastiveV2T, "only the VC head's input is dropped")
        #expect(trainer.computeGradients(batch, context: context, dropout: dropout) == dropped, "same seed, same step")
        let names = trainer.gradients.names.filter { $0.hasPrefix("visual.adapter_fc.") || $0.contains("resblocks.1.adapter_pre_mlp.fc1") }
        #expect(names.count == 4, "\(names)")
        var rng = SplitMix64(seed: 5)
        let h: Float = 2e-3
        for name in names {
            _ = trainer.computeGradients(batch, context: context, dropout: dropout)
            let analytic = trainer.gradients.values(name)!.values
            let original = trainer.gradients.parameter(name)!
            for _ in 0..<3 {
                let index = Int(rng.next() % UInt64(analytic.count))
                func loss(_ delta: Float) -> Float {
                    var v = original
                    v[index] += delta
                    trainer.gradients.setParameter(name, v)
                    defer { trainer.gradients.setParameter(name, original) }
                    return trainer.computeGradients(batch, context: context, dropout: dropout).total
                }
                let numeric = (loss(h) - loss(-h)) / (2 * h)
                #expect(abs(analytic[index] - numeric) <= 6e-4 + 3e-2 * abs(numeric),
                        "\(name)[\(index)]: analytic \(analytic[index]), numeric \(numeric)")
            }
        }
    }
}
