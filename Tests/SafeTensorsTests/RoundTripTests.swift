import Foundation
import Testing
@testable import SafeTensors

@Suite struct RoundTripTests {
    /// Little-endian bytes for `count` elements of `dtype`: 0, 1, 2, ... in every byte lane.
    private func patternBytes(_ dtype: DType, count: Int) -> [UInt8] {
        (0..<(count * dtype.byteSize)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
    }

    @Test(arguments: DType.allCases)
    func rawBytesRoundTrip(dtype: DType) throws {
        let bytes = patternBytes(dtype, count: 6)
        var writer = SafeTensorsWriter()
        // A one-byte tensor first, so the tensor under test starts at an odd offset.
        try writer.add(name: "odd", dtype: .u8, shape: [1], bytes: [0xAB])
        try writer.add(name: "t", dtype: dtype, shape: [2, 3], bytes: bytes)
        try withTemporaryDirectory { directory throws in
            let path = directory + "/x.safetensors"
            try writer.write(to: path)
            let file = try SafeTensorsFile(path: path)
            #expect(file.info("t") == TensorInfo(name: "t", dtype: dtype, shape: [2, 3],
                                                 byteRange: 1..<(1 + bytes.count)))
            #expect(Array(try file.bytes("t")) == bytes)
            #expect(Array(try file.bytes("odd")) == [0xAB])
        }
    }

    @Test func convenienceAddersRoundTrip() throws {
        let floats: [Float] = [0, -0.0, 1.5, -3.25e-3, .infinity, -.infinity, 0x1p-140 /* subnormal */, .greatestFiniteMagnitude]
        let halves: [Float] = [0, -0.0, 1, -2, 65504, 0x1p-24, 0x1p-14, .infinity, 0.333]
        let int64s: [Int64] = [.min, -1, 0, 1, .max, 1 << 40]
        var writer = SafeTensorsWriter(metadata: ["format": "pt", "quote\"key": "line\nbreak ünï"])
        try writer.add(name: "odd", dtype: .i8, shape: [3], bytes: [0xFF, 0x00, 0x7F])
        try writer.add(name: "f32", shape: [2, 4], floats: floats)
        try writer.add(name: "f16", shape: [9], float16s: halves)
        try writer.add(name: "bf16", shape: [8], bfloat16s: floats)
        try writer.add(name: "ids", shape: [3, 2], int64s: int64s)
        try writer.add(name: "scalar", shape: [], floats: [42])
        try writer.add(name: "empty", shape: [0, 5], floats: [])
        try writer.add(name: "name with \"quotes\", \\ and \u{1} and 漢字", shape: [1], int64s: [7])

        try withTemporaryDirectory { directory throws in
            let path = directory + "/x.safetensors"
            try writer.write(to: path)
            let file = try SafeTensorsFile(path: path)

            #expect(file.metadata == writer.metadata)
            #expect(file.names == writer.tensorNames)  // tensors laid out in insertion order
            #expect(zip(try file.floats("f32"), floats).allSatisfy(sameFloat))
            let expectedHalves = halves.map {
                FloatConversion.float(fromFloat16Bits: FloatConversion.float16Bits(from: $0))
            }
            #expect(zip(try file.floats("f16"), expectedHalves).allSatisfy(sameFloat))
            #expect(try file.floats("f16")[8] == 0.3330078125)  // nearest binary16 to 0.333: 1364 / 4096
            let expectedBF16 = floats.map {
                FloatConversion.float(fromBFloat16Bits: FloatConversion.bfloat16Bits(from: $0))
            }
            #expect(zip(try file.floats("bf16"), expectedBF16).allSatisfy(sameFloat))
            #expect(try file.int64s("ids") == int64s)
            #expect(try file.int64s("odd") == [-1, 0, 127])
            #expect(try file.floats("scalar") == [42])
            #expect(try file.floats("empty") == [])
            #expect(try file.bytes("empty").count == 0)
            #expect(file.info("empty")?.elementCount == 0)
            #expect(try file.int64s("name with \"quotes\", \\ and \u{1} and 漢字") == [7])
        }
    }

    @Test func headerIsSortedCompactAndPaddedToEightBytes() throws {
        var writer = SafeTensorsWriter(metadata: ["b": "2", "a": "1"])
        try writer.add(name: "z", shape: [1], floats: [1])
        try writer.add(name: "B", shape: [2], int64s: [1, 2])
        try writer.add(name: "a", shape: [], float16s: [1])
        let header = writer.headerBytes()
        #expect(header.count % 8 == 0)
        let text = String(decoding: header, as: UTF8.self)
        let json = #"{"__metadata__":{"a":"1","b":"2"},"#
            + #""B":{"dtype":"I64","shape":[2],"data_offsets":[4,20]},"#
            + #""a":{"dtype":"F16","shape":[],"data_offsets":[20,22]},"#
            + #""z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        #expect(text.hasPrefix(json))
        #expect(text.dropFirst(json.utf8.count).allSatisfy { $0 == " " })
        #expect(header.count - json.utf8.count < 8)
    }

    @Test func emptyWriterWritesAValidFile() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/empty.safetensors"
            try SafeTensorsWriter().write(to: path)
            #expect(try readFile(path) == fileBytes(header: "{}      "))
            let file = try SafeTensorsFile(path: path)
            #expect(file.names.isEmpty && file.metadata.isEmpty)
        }
    }

    @Test func writeReplacesAnExistingFileAndLeavesNoTemporaryFile() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/x.safetensors"
            try writeFile(Array("old content".utf8), to: path)
            var writer = SafeTensorsWriter()
            try writer.add(name: "w", shape: [2], floats: [1, 2])
            try writer.write(to: path)
            #expect(try SafeTensorsFile(path: path).floats("w") == [1, 2])
            #expect(try directoryListing(directory) == ["x.safetensors"])
        }
    }

    @Test func bytesViewStaysValidWhileTheFileObjectLives() throws {
        var writer = SafeTensorsWriter()
        try writer.add(name: "pad", dtype: .u8, shape: [3], bytes: [1, 2, 3])
        try writer.add(name: "w", shape: [4], floats: [1, 2, 3, 4])
        try withTemporaryDirectory { directory throws in
            let path = directory + "/x.safetensors"
            try writer.write(to: path)
            let file = try SafeTensorsFile(path: path)
            let view = try file.bytes("w")
            // Offset 3 in the data section: not 4-byte aligned, so read unaligned.
            let second = Float(bitPattern: UInt32(littleEndian: view.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
            #expect(view.count == 16 && second == 2)
            withExtendedLifetime(file) {}
        }
    }

    @Test func conversionsRejectTheWrongDtypeAndUnknownNames() throws {
        var writer = SafeTensorsWriter()
        try writer.add(name: "ids", shape: [1], int64s: [1])
        try writer.add(name: "w", shape: [1], floats: [1])
        try writer.add(name: "f8", dtype: .f8e4m3, shape: [2], bytes: [0x38, 0x40])
        try writer.add(name: "mask", dtype: .bool, shape: [1], bytes: [1])
        try writer.add(name: "big", dtype: .u64, shape: [2], bytes: [1, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 0, 0, 0, 0, 0, 0x80])
        try withTemporaryDirectory { directory throws in
            let path = directory + "/x.safetensors"
            try writer.write(to: path)
            let file = try SafeTensorsFile(path: path)

            let floatsOfInts = #expect(throws: SafeTensorsError.self) { try file.floats("ids") }
            #expect(floatsOfInts?.description
                == "checkpoint \(path): tensor ids: has dtype I64, expected a floating-point dtype (F32, F16, BF16 or F64)")
            let f8 = #expect(throws: SafeTensorsError.self) { try file.floats("f8") }
            #expect(f8?.tensor == "f8" && f8?.message.contains("F8_E4M3") == true)
            #expect(Array(try file.bytes("f8")) == [0x38, 0x40])
            let intsOfFloats = #expect(throws: SafeTensorsError.self) { try file.int64s("w") }
            #expect(intsOfFloats?.message.contains("has dtype F32, expected an integer dtype") == true)
            #expect(throws: SafeTensorsError.self) { try file.int64s("mask") }
            let big = #expect(throws: SafeTensorsError.self) { try file.int64s("big") }
            #expect(big?.message == "element 1 is 9223372036854775808, too large for Int64")
            for read in [{ _ = try file.bytes("nope") }, { _ = try file.floats("nope") }, { _ = try file.int64s("nope") }] {
                let missing = #expect(throws: SafeTensorsError.self) { try read() }
                #expect(missing?.description == "checkpoint \(path): tensor nope: no such tensor in the file")
            }
            #expect(file.info("nope") == nil)
        }
    }

    @Test func unsignedAndNarrowIntegersConvert() throws {
        var writer = SafeTensorsWriter()
        try writer.add(name: "u16", dtype: .u16, shape: [2], bytes: [0xFF, 0xFF, 0x01, 0x00])
        try writer.add(name: "u32", dtype: .u32, shape: [1], bytes: [0xFF, 0xFF, 0xFF, 0xFF])
        try writer.add(name: "i16", dtype: .i16, shape: [1], bytes: [0x00, 0x80])
        try writer.add(name: "i32", dtype: .i32, shape: [1], bytes: [0xFE, 0xFF, 0xFF, 0xFF])
        try writer.add(name: "f64", dtype: .f64, shape: [1], bytes: withUnsafeBytes(of: (1e300).bitPattern.littleEndian) { Array($0) })
        try withTemporaryDirectory { directory throws in
            let path = directory + "/x.safetensors"
            try writer.write(to: path)
            let file = try SafeTensorsFile(path: path)
            #expect(try file.int64s("u16") == [65535, 1])
            #expect(try file.int64s("u32") == [4_294_967_295])
            #expect(try file.int64s("i16") == [-32768])
            #expect(try file.int64s("i32") == [-2])
            #expect(try file.floats("f64") == [.infinity])  // beyond Float range: rounds to inf
        }
    }

    @Test func sharesSafelyAcrossTasks() async throws {
        var writer = SafeTensorsWriter()
        try writer.add(name: "w", shape: [1000], floats: (0..<1000).map(Float.init))
        try await withTemporaryDirectoryAsync { directory async throws in
            let path = directory + "/x.safetensors"
            try writer.write(to: path)
            let file = try SafeTensorsFile(path: path)
            let sums = try await withThrowingTaskGroup(of: Float.self) { group in
                for _ in 0..<8 { group.addTask { try file.floats("w").reduce(0, +) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(sums == Array(repeating: 499_500, count: 8))
        }
    }
}
