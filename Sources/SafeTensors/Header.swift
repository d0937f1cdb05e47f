// Validation of the JSON header against the file it came from. Everything a reader later relies
// on is checked here once: dtypes, shapes, offsets inside the data section, sizes that match
// shape × dtype, and no two tensors sharing bytes. Holes between tensors are allowed (some
// writers pad), so coverage of the data section is not checked.

/// The validated content of a header.
struct Header {
    /// Largest header accepted, as in the reference implementation.
    static let maximumLength = 100_000_000

    static let metadataKey = "__metadata__"

    var metadata: [String: String]
    /// Ordered by `byteRange.lowerBound`, then end, then name.
    var tensors: [TensorInfo]

    /// Parses and validates `bytes`, the header text, for a data section of `dataSectionSize`
    /// bytes. Errors name `path` and, where there is one, the tensor.
    static func parse(
        _ bytes: UnsafeRawBufferPointer, dataSectionSize: Int, path: String
    ) throws -> Header {
        func failure(_ tensor: String?, _ message: String) -> SafeTensorsError {
            SafeTensorsError(path: path, tensor: tensor, message: message)
        }

        let root: JSONValue
        do {
            root = try JSONParser.parse(bytes)
        } catch {
            throw failure(nil, "header is not valid JSON: \(error.message) at byte \(error.offset) of the header")
        }
        guard case .object(let members) = root else {
            throw failure(nil, "header is \(root.kind), expected a JSON object")
        }

        var metadata: [String: String] = [:]
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(members.count)
        for member in members {
            let (key, value) = (member.key, member.value)
            if key == metadataKey {
                metadata = try parseMetadata(value, failure: { failure(nil, $0) })
            } else {
                tensors.append(try parseEntry(
                    name: key, value, dataSectionSize: dataSectionSize,
                    failure: { failure(key, $0) }))
            }
        }

        tensors.sort {
            ($0.byteRange.lowerBound, $0.byteRange.upperBound, $0.name)
                < ($1.byteRange.lowerBound, $1.byteRange.upperBound, $1.name)
        }
        // Sorted by begin, a tensor overlaps an earlier one exactly when it begins before the
        // furthest end seen so far. Empty tensors own no bytes and cannot overlap.
        var furthest: TensorInfo?
        for tensor in tensors where !tensor.byteRange.isEmpty {
            guard let previous = furthest else {
                furthest = tensor
                continue
            }
            if tensor.byteRange.lowerBound < previous.byteRange.upperBound {
                throw failure(tensor.name,
                    "data_offsets \(describe(tensor.byteRange)) overlap tensor \(previous.name) at \(describe(previous.byteRange))")
            }
            furthest = tensor  // begins at or after previous's end, so it also ends later
        }
        return Header(metadata: metadata, tensors: tensors)
    }

    private static func parseMetadata(
        _ value: JSONValue, failure: (String) -> SafeTensorsError
    ) throws -> [String: String] {
        guard case .object(let members) = value else {
            throw failure("\(metadataKey) is \(value.kind), expected an object of strings")
        }
        var metadata: [String: String] = [:]
        for member in members {
            let (key, entry) = (member.key, member.value)
            guard case .string(let text) = entry else {
                throw failure("\(metadataKey) value for key \"\(key)\" is \(entry.kind), expected a string")
            }
            metadata[key] = text
        }
        return metadata
    }

    private static func parseEntry(
        name: String, _ value: JSONValue, dataSectionSize: Int,
        failure: (String) -> SafeTensorsError
    ) throws -> TensorInfo {
        guard case .object(let fields) = value else {
            throw failure("entry is \(value.kind), expected an object with dtype, shape and data_offsets")
        }
        var dtypeValue: JSONValue?
        var shapeValue: JSONValue?
        var offsetsValue: JSONValue?
        for member in fields {
            let (field, fieldValue) = (member.key, member.value)
            switch field {
            case "dtype": dtypeValue = fieldValue
            case "shape": shapeValue = fieldValue
            case "data_offsets": offsetsValue = fieldValue
            default: throw failure("unexpected key \"\(field)\" in tensor entry")
            }
        }
        guard let dtypeValue else { throw failure("missing \"dtype\"") }
        guard let shapeValue else { throw failure("missing \"shape\"") }
        guard let offsetsValue else { throw failure("missing \"data_offsets\"") }

        guard case .string(let dtypeName) = dtypeValue else {
            throw failure("dtype is \(dtypeValue.kind), expected a string such as \"F32\"")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw failure("unknown dtype \(jsonStringLiteral(dtypeName)); known: "
                + DType.allCases.map(\.rawValue).joined(separator: ", "))
        }

        guard case .array(let dimensions) = shapeValue else {
            throw failure("shape is \(shapeValue.kind), expected an array of non-negative integers")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dimensions.count)
        for (index, dimension) in dimensions.enumerated() {
            shape.append(try nonNegativeInteger(dimension) { failure("shape[\(index)] \($0)") })
        }

        guard case .array(let offsets) = offsetsValue else {
            throw failure("data_offsets is \(offsetsValue.kind), expected [begin, end]")
        }
        guard offsets.count == 2 else {
            throw failure("data_offsets has \(offsets.count) values, expected [begin, end]")
        }
        let begin = try nonNegativeInteger(offsets[0]) { failure("data_offsets[0] \($0)") }
        let end = try nonNegativeInteger(offsets[1]) { failure("data_offsets[1] \($0)") }
        guard begin <= end else {
            throw failure("data_offsets \(describe([begin, end])) have begin > end")
        }
        guard end <= dataSectionSize else {
            throw failure("data_offsets \(describe([begin, end])) exceed data section of \(dataSectionSize) bytes")
        }
        guard let needed = byteCount(of: dtype, shape: shape) else {
            throw failure("shape \(describe(shape)) with dtype \(dtype) overflows a 64-bit byte count")
        }
        guard needed == end - begin else {
            throw failure("shape \(describe(shape)) with dtype \(dtype) needs \(needed) bytes, "
                + "but data_offsets \(describe([begin, end])) span \(end - begin)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, byteRange: begin..<end)
    }

    /// An exact non-negative integer from a JSON number's text: fractions, exponents, negative
    /// values and values past `Int.max` are rejected rather than rounded.
    private static func nonNegativeInteger(
        _ value: JSONValue, failure: (String) -> SafeTensorsError
    ) throws -> Int {
        guard case .number(let text) = value else {
            throw failure("is \(value.kind), expected a non-negative integer")
        }
        guard text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw failure("is \(value.brief), expected a non-negative integer")
        }
        guard let integer = Int(text) else {
            throw failure("is \(value.brief), too large for a 64-bit integer")
        }
        return integer
    }
}

/// `[0, 3072]`: a byte range as the header writes it.
func describe(_ range: Range<Int>) -> String {
    describe([range.lowerBound, range.upperBound])
}
