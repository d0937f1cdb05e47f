import Testing
@testable import SafeTensors
import Ops

@Suite struct FuzzTests {
    /// Flips random bytes of a valid file's length prefix and header. Every variant must be
    /// rejected with a `SafeTensorsError` or accepted and then fully readable; nothing may trap.
    @Test func randomByteFlipsNeverCrash() throws {
        var writer = SafeTensorsWriter(metadata: ["format": "pt", "k": "v"])
        try writer.add(name: "embed.weight", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        try writer.add(name: "half", shape: [4], float16s: [1, -1, 0.5, 65504])
        try writer.add(name: "ids", shape: [2], int64s: [7, -7])
        try writer.add(name: "mask", dtype: .u8, shape: [3], bytes: [0, 1, 2])
        try writer.add(name: "scalar", shape: [], bfloat16s: [3])

        try withTemporaryDirectory { directory throws in
            let path = directory + "/fuzz.safetensors"
            try writer.write(to: path)
            let original = try readFile(path)
            let headerEnd = 8 + writer.headerBytes().count

            var generator = SplitMix64(seed: 20_250_101)
            var accepted = 0
            var rejected = 0
            for iteration in 0..<600 {
                var bytes = original
                let flips = Int.random(in: 1...4, using: &generator)
                for _ in 0..<flips {
                    // One in eight flips hits the length prefix, the rest the header text.
                    let index = Int.random(in: 0..<8, using: &generator) == 0
                        ? Int.random(in: 0..<8, using: &generator)
                        : Int.random(in: 8..<headerEnd, using: &generator)
                    if iteration % 2 == 0 {
                        bytes[index] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
                    } else {
                        // Structural characters and digits are likelier to reach deep checks.
                        let alphabet = Array(#"{}[]":,-.0123456789eE \"#.utf8) + [0x00, 0xFF, 0xC3]
                        bytes[index] = alphabet.randomElement(using: &generator)!
                    }
                }
                try writeFile(bytes, to: path)
                do {
                    let file = try SafeTensorsFile(path: path)
                    accepted += 1
                    for name in file.names {
                        guard let info = file.info(name) else {
                            Issue.record("listed tensor \(name) has no info")
                            continue
                        }
                        #expect(try file.bytes(name).count == info.byteRange.count)
                        if info.dtype.isConvertibleToFloat {
                            #expect(try file.floats(name).count == info.elementCount)
                        }
                        if info.dtype.isConvertibleToInt64, info.dtype != .u64 {
                            #expect(try file.int64s(name).count == info.elementCount)
                        }
                    }
                } catch let error as SafeTensorsError {
                    rejected += 1
                    #expect(!error.description.contains("\n"))
                } catch {
                    Issue.record("iteration \(iteration): unexpected error type \(error)")
                }
            }
            // Both outcomes must occur, or the fuzzing is not exercising anything.
            #expect(accepted > 0 && rejected > 0, "accepted \(accepted), rejected \(rejected)")
        }
    }
}
