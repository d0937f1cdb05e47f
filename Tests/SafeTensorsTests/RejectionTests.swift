import Testing
@testable import SafeTensors

/// One test per way a file can be malformed. Each checks that the message names the problem
/// and, where there is one, the tensor.
@Suite struct RejectionTests {
    /// `{"dtype": .., "shape": .., "data_offsets": ..}` from JSON fragments.
    private func entry(_ dtype: String = #""F32""#, _ shape: String = "[2]", _ offsets: String = "[0,8]") -> String {
        #"{"dtype":\#(dtype),"shape":\#(shape),"data_offsets":\#(offsets)}"#
    }

    /// A header holding one tensor "w" with the given fields, and 16 bytes of data.
    private func single(_ dtype: String = #""F32""#, _ shape: String = "[2]", _ offsets: String = "[0,8]") -> [UInt8] {
        fileBytes(header: #"{"w":\#(entry(dtype, shape, offsets))}"#, data: Array(repeating: 0, count: 16))
    }

    @Test func wellFormedBaselineIsAccepted() throws {
        // The fragments above are valid as they stand; each test below breaks exactly one thing.
        try withTemporaryDirectory { directory throws in
            try writeFile(single(), to: directory + "/ok.safetensors")
            #expect(try SafeTensorsFile(path: directory + "/ok.safetensors").names == ["w"])
        }
    }

    @Test func truncatedFile() throws {
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        try writer.add(name: "w", shape: [4], floats: [1, 2, 3, 4])
        let whole = try withTemporaryDirectory { directory throws in
            try writer.write(to: directory + "/w.safetensors")
            return try readFile(directory + "/w.safetensors")
        }
        let headerEnd = 8 + writer.headerBytes().count
        let cuts: [(Int, [String])] = [
            (0, ["file is empty"]),
            (1, ["file is 1 bytes, shorter than the 8-byte header length"]),
            (7, ["file is 7 bytes, shorter than the 8-byte header length"]),
            (8, ["header length \(headerEnd - 8) is larger than the 0 bytes that follow it"]),
            (20, ["header length \(headerEnd - 8) is larger than the 12 bytes that follow it"]),
            (headerEnd - 1, ["is larger than the \(headerEnd - 9) bytes"]),
        ]
        for (cut, mentions) in cuts {
            try expectRejection(Array(whole.prefix(cut)), mentions: mentions)
        }
        // Cut inside or right before the data: the header is whole, the tensor is not.
        for cut in [headerEnd, headerEnd + 1, headerEnd + 15] {
            try expectRejection(Array(whole.prefix(cut)),
                                mentions: ["data_offsets [0, 16] exceed data section of \(cut - headerEnd) bytes"],
                                tensor: "w")
        }
    }

    @Test func headerLengthLargerThanFile() throws {
        try expectRejection(fileBytes(header: "{}", headerLength: 3),
                            mentions: ["header length 3 is larger than the 2 bytes that follow it"])
        try expectRejection(fileBytes(header: "{}", headerLength: 99_999_999),
                            mentions: ["header length 99999999 is larger"])
    }

    @Test func hugeHeaderLength() throws {
        try expectRejection(fileBytes(header: "{}", headerLength: 100_000_001),
                            mentions: ["header length 100000001 exceeds the limit of 100000000 bytes"])
        try expectRejection(fileBytes(header: "{}", headerLength: .max),
                            mentions: ["header length 18446744073709551615 exceeds the limit"])
        try expectRejection(fileBytes(header: "{}", headerLength: 1 << 63),
                            mentions: ["exceeds the limit"])
    }

    @Test func invalidJSON() throws {
        let cases: [(String, String)] = [
            ("", "unexpected end of header, expected a value at byte 0"),
            (#"{"w":"#, "unexpected end of header, expected a value at byte 5"),
            (#"{"w" 1}"#, "expected ':'"),
            (#"{"w":1,}"#, "expected a string key"),
            (#"{w:1}"#, "expected a string key at byte 1"),
            (#"{"a":1} x"#, "unexpected 'x' after the top-level value at byte 8"),
            (#"{"a":tru}"#, "invalid literal"),
            (#"{"a":01}"#, "expected ',' or '}'"),
            (#"{"a":1.}"#, "expected a digit after '.'"),
            (#"{"a":-}"#, "expected a digit"),
            (#"{"a":"\q"}"#, "invalid escape"),
            (#"{"a":"\ud800"}"#, "unpaired surrogate"),
            (#"{"a":"\udc00x"}"#, "unpaired surrogate"),
            ("{\"a\":\"tab\there\"}", "unescaped control character 0x9"),
            (#"{"a":"open"#, "unterminated string"),
            (#"{"a":1,"a":2}"#, "duplicate key \"a\""),
            (String(repeating: "[", count: 10_000), "nesting deeper than 32 levels"),
            ("{\u{0}}", "unexpected byte 0x0"),
        ]
        for (header, problem) in cases {
            try expectRejection(fileBytes(header: header), mentions: ["header is not valid JSON", problem])
        }
        // Bytes that are not UTF-8, inside a string and outside one.
        try expectRejection(fileBytes(rawHeader: Array("{\"a".utf8) + [0xFF] + Array("\":1}".utf8)),
                            mentions: ["string is not valid UTF-8 at byte 1"])
        try expectRejection(fileBytes(rawHeader: [UInt8(ascii: "{"), 0xC3]),
                            mentions: ["unexpected byte 0xc3, expected a string key"])
    }

    @Test func nonObjectTopLevel() throws {
        for (header, kind) in [("[1,2]", "an array"), (#""x""#, "a string"), ("3", "a number"),
                               ("null", "null"), ("true", "a boolean")] {
            try expectRejection(fileBytes(header: header),
                                mentions: ["header is \(kind), expected a JSON object"])
        }
    }

    @Test func unknownDtype() throws {
        try expectRejection(single(#""F13""#), mentions: [#"unknown dtype "F13""#, "F32"], tensor: "w")
        try expectRejection(single(#""f32""#), mentions: [#"unknown dtype "f32""#], tensor: "w")
        try expectRejection(single("32"), mentions: ["dtype is a number, expected a string"], tensor: "w")
    }

    @Test func negativeFractionalAndOverLargeOffsets() throws {
        let cases: [(String, String)] = [
            ("[-1,7]", "data_offsets[0] is -1, expected a non-negative integer"),
            ("[0,-8]", "data_offsets[1] is -8, expected a non-negative integer"),
            ("[0,8.0]", "data_offsets[1] is 8.0, expected a non-negative integer"),
            ("[0.5,8]", "data_offsets[0] is 0.5, expected a non-negative integer"),
            ("[0,8e0]", "data_offsets[1] is 8e0, expected a non-negative integer"),
            ("[-0,8]", "data_offsets[0] is -0, expected a non-negative integer"),
            ("[0,99999999999999999999]", "data_offsets[1] is 99999999999999999999, too large for a 64-bit integer"),
            (#"["0",8]"#, "data_offsets[0] is a string, expected a non-negative integer"),
            ("[0,null]", "data_offsets[1] is null, expected a non-negative integer"),
            ("[0]", "data_offsets has 1 values, expected [begin, end]"),
            ("[0,4,8]", "data_offsets has 3 values, expected [begin, end]"),
            (#"{"begin":0}"#, "data_offsets is an object, expected [begin, end]"),
        ]
        for (offsets, problem) in cases {
            try expectRejection(single(#""F32""#, "[2]", offsets), mentions: [problem], tensor: "w")
        }
    }

    @Test func offsetsPastTheEnd() throws {
        try expectRejection(single(#""F32""#, "[4]", "[8,24]"),
                            mentions: ["data_offsets [8, 24] exceed data section of 16 bytes"], tensor: "w")
        try expectRejection(single(#""F32""#, "[0]", "[17,17]"),
                            mentions: ["data_offsets [17, 17] exceed data section of 16 bytes"], tensor: "w")
        // The message of the brief's example, in full.
        let header = #"{"vision_model.embeddings.class_embedding":{"dtype":"F32","shape":[768],"data_offsets":[0,3072]}}"#
        let error = try rejection(fileBytes(header: header, data: Array(repeating: 0, count: 1024)))
        #expect(error?.message == "data_offsets [0, 3072] exceed data section of 1024 bytes")
        #expect(error?.description.hasSuffix(
            ": tensor vision_model.embeddings.class_embedding: data_offsets [0, 3072] exceed data section of 1024 bytes") == true)
    }

    @Test func beginAfterEnd() throws {
        try expectRejection(single(#""F32""#, "[2]", "[8,0]"),
                            mentions: ["data_offsets [8, 0] have begin > end"], tensor: "w")
    }

    @Test func overlappingTensors() throws {
        let header = #"{"a":\#(entry(#""F32""#, "[2]", "[0,8]")),"b":\#(entry(#""F32""#, "[2]", "[4,12]"))}"#
        try expectRejection(fileBytes(header: header, data: Array(repeating: 0, count: 16)),
                            mentions: ["data_offsets [4, 12] overlap tensor a at [0, 8]"], tensor: "b")
        // Listed in the other order, and one tensor inside another.
        let nested = #"{"outer":\#(entry(#""F32""#, "[4]", "[0,16]")),"inner":\#(entry(#""U8""#, "[2]", "[14,16]"))}"#
        try expectRejection(fileBytes(header: nested, data: Array(repeating: 0, count: 16)),
                            mentions: ["overlap tensor outer at [0, 16]"], tensor: "inner")
        // Two tensors at the same bytes (an alias).
        let alias = #"{"x":\#(entry()),"y":\#(entry())}"#
        try expectRejection(fileBytes(header: alias, data: Array(repeating: 0, count: 16)),
                            mentions: ["data_offsets [0, 8] overlap tensor x at [0, 8]"], tensor: "y")
    }

    @Test func holesAndEmptyTensorsAreAllowed() throws {
        // Padding between tensors, an empty tensor inside another's bytes, and unused trailing data.
        let header = #"{"a":\#(entry(#""F32""#, "[1]", "[0,4]")),"b":\#(entry(#""F32""#, "[1]", "[8,12]")),"#
            + #""e":\#(entry(#""F32""#, "[0]", "[9,9]"))}"#
        try withTemporaryDirectory { directory throws in
            try writeFile(fileBytes(header: header, data: Array(repeating: 0, count: 20)), to: directory + "/h.safetensors")
            #expect(try SafeTensorsFile(path: directory + "/h.safetensors").names == ["a", "b", "e"])
        }
    }

    @Test func shapeTimesDtypeMismatch() throws {
        try expectRejection(single(#""F32""#, "[3]", "[0,8]"),
                            mentions: ["shape [3] with dtype F32 needs 12 bytes, but data_offsets [0, 8] span 8"],
                            tensor: "w")
        try expectRejection(single(#""F16""#, "[2, 3]", "[0,8]"),
                            mentions: ["shape [2, 3] with dtype F16 needs 12 bytes"], tensor: "w")
        try expectRejection(single(#""F32""#, "[4611686018427387904, 4]", "[0,8]"),
                            mentions: ["overflows a 64-bit byte count"], tensor: "w")
    }

    @Test func malformedShape() throws {
        try expectRejection(single(#""F32""#, "[-2]", "[0,8]"),
                            mentions: ["shape[0] is -2, expected a non-negative integer"], tensor: "w")
        try expectRejection(single(#""F32""#, "[1, 2.0]", "[0,8]"),
                            mentions: ["shape[1] is 2.0, expected a non-negative integer"], tensor: "w")
        try expectRejection(single(#""F32""#, "2", "[0,8]"),
                            mentions: ["shape is a number, expected an array"], tensor: "w")
    }

    @Test func malformedTensorEntry() throws {
        try expectRejection(fileBytes(header: #"{"w":[1]}"#),
                            mentions: ["entry is an array, expected an object"], tensor: "w")
        try expectRejection(fileBytes(header: #"{"w":{"dtype":"F32","shape":[0]}}"#),
                            mentions: [#"missing "data_offsets""#], tensor: "w")
        try expectRejection(fileBytes(header: #"{"w":{"shape":[0],"data_offsets":[0,0]}}"#),
                            mentions: [#"missing "dtype""#], tensor: "w")
        try expectRejection(
            fileBytes(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[0,0],"strides":[1]}}"#),
            mentions: [#"unexpected key "strides" in tensor entry"#], tensor: "w")
    }

    @Test func metadataWithNonStringValue() throws {
        try expectRejection(fileBytes(header: #"{"__metadata__":{"format":"pt","epoch":3}}"#),
                            mentions: [#"__metadata__ value for key "epoch" is a number, expected a string"#])
        try expectRejection(fileBytes(header: #"{"__metadata__":["pt"]}"#),
                            mentions: ["__metadata__ is an array, expected an object of strings"])
        try expectRejection(fileBytes(header: #"{"__metadata__":{"a":{"b":"c"}}}"#),
                            mentions: [#"value for key "a" is an object"#])
    }

    @Test func notAFile() throws {
        try withTemporaryDirectory { directory throws in
            let missing = #expect(throws: SafeTensorsError.self) {
                _ = try SafeTensorsFile(path: directory + "/missing.safetensors")
            }
            #expect(missing?.description == "checkpoint \(directory)/missing.safetensors: cannot open: No such file or directory")
            let isDirectory = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: directory) }
            #expect(isDirectory?.message == "is a directory, expected a safetensors file")
        }
    }
}
