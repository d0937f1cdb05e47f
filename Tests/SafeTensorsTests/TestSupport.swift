import Foundation
import Ops
import Testing
@testable import SafeTensors

/// Creates a fresh empty directory under the system's temporary directory.
func makeTemporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("safetensors-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    return path
}

/// Runs `body` with a fresh empty directory that is removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// `withTemporaryDirectory` for async bodies.
func withTemporaryDirectoryAsync(_ body: (String) async throws -> Void) async throws {
    let path = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: path) }
    try await body(path)
}

/// Names of the entries of `directory`, sorted.
func directoryListing(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
}

func writeFile(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readFile(_ path: String) throws -> [UInt8] {
    try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
}

/// A safetensors file from its parts. `headerLength` overrides the length prefix.
func fileBytes(header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    fileBytes(rawHeader: Array(header.utf8), data: data, headerLength: headerLength)
}

/// A safetensors file whose header may hold bytes that are not UTF-8.
func fileBytes(rawHeader headerBytes: [UInt8], data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    let length = headerLength ?? UInt64(headerBytes.count)
    return withUnsafeBytes(of: length.littleEndian) { Array($0) } + headerBytes + data
}

/// Writes `bytes` to a file, opens it, and returns the error the reader must throw. Records a
/// test failure (and returns nil) when the file is accepted or the error is of another type.
func rejection(
    _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation
) throws -> SafeTensorsError? {
    try withTemporaryDirectory { directory throws in
        let path = directory + "/bad.safetensors"
        try writeFile(bytes, to: path)
        let error = #expect(throws: SafeTensorsError.self, sourceLocation: sourceLocation) {
            _ = try SafeTensorsFile(path: path)
        }
        if let error {
            #expect(error.path == path, sourceLocation: sourceLocation)
            #expect(error.description.hasPrefix("checkpoint \(path): "), sourceLocation: sourceLocation)
            #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
        }
        return error
    }
}

/// Checks that `bytes` is rejected with a message containing every string of `mentions`, and
/// naming `tensor` (nil: no tensor).
func expectRejection(
    _ bytes: [UInt8], mentions: [String], tensor: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    guard let error = try rejection(bytes, sourceLocation: sourceLocation) else { return }
    for text in mentions {
        #expect(error.message.contains(text), "\(error) should mention \"\(text)\"",
                sourceLocation: sourceLocation)
    }
    #expect(error.tensor == tensor, "\(error)", sourceLocation: sourceLocation)
    if let tensor {
        #expect(error.description.contains("tensor \(tensor): "), sourceLocation: sourceLocation)
    }
}


/// Float equality that treats two NaNs as equal and tells +0 from -0.
func sameFloat(_ a: Float, _ b: Float) -> Bool {
    (a.isNaN && b.isNaN) || a.bitPattern == b.bitPattern
}
