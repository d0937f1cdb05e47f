import Foundation
import Testing
@testable import SafeTensors

@Suite struct WriterTests {
    @Test func duplicateNames() throws {
        var writer = SafeTensorsWriter()
        try writer.add(name: "w", shape: [1], floats: [1])
        let error = #expect(throws: SafeTensorsError.self) { try writer.add(name: "w", shape: [1], int64s: [1]) }
        #expect(error?.description == "safetensors writer: tensor w: a tensor with this name was already added")
        #expect(writer.tensorNames == ["w"])
    }

    @Test func sizeAndCountMismatches() throws {
        var writer = SafeTensorsWriter()
        let bytes = #expect(throws: SafeTensorsError.self) {
            try writer.add(name: "w", dtype: .f32, shape: [2, 3], bytes: Array(repeating: 0, count: 20))
        }
        #expect(bytes?.message == "shape [2, 3] with dtype F32 needs 24 bytes, got 20")
        #expect(bytes?.tensor == "w")
        let floats = #expect(throws: SafeTensorsError.self) { try writer.add(name: "f", shape: [2, 3], floats: [1, 2]) }
        #expect(floats?.message == "shape [2, 3] needs 6 values, got 2")
        let halves = #expect(throws: SafeTensorsError.self) { try writer.add(name: "h", shape: [4], float16s: [1]) }
        #expect(halves?.message == "shape [4] needs 4 values, got 1")
        let negative = #expect(throws: SafeTensorsError.self) { try writer.add(name: "n", shape: [-1], floats: []) }
        #expect(negative?.message == "shape [-1] has a negative dimension")
        let overflow = #expect(throws: SafeTensorsError.self) {
            try writer.add(name: "o", dtype: .f64, shape: [1 << 40, 1 << 40], bytes: [])
        }
        #expect(overflow?.message.contains("overflows") == true)
        #expect(writer.tensorNames.isEmpty)
    }

    @Test func reservedAndEmptyNames() throws {
        var writer = SafeTensorsWriter()
        let reserved = #expect(throws: SafeTensorsError.self) { try writer.add(name: "__metadata__", shape: [], floats: [1]) }
        #expect(reserved?.message.contains("reserved") == true)
        #expect(throws: SafeTensorsError.self) { try writer.add(name: "", shape: [], floats: [1]) }
    }

    @Test func writeIntoMissingDirectoryLeavesNothingBehind() throws {
        var writer = SafeTensorsWriter()
        try writer.add(name: "w", shape: [1], floats: [1])
        try withTemporaryDirectory { directory throws in
            let path = directory + "/no/such/dir/model.safetensors"
            let error = #expect(throws: SafeTensorsError.self) { try writer.write(to: path) }
            #expect(error?.path == path)
            #expect(error?.description == "checkpoint \(path): cannot create a temporary file in \(directory)/no/such/dir: No such file or directory")
            #expect(try directoryListing(directory).isEmpty)
        }
    }

    @Test func writeToADirectoryPath() throws {
        try withTemporaryDirectory { directory throws in
            let error = #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter().write(to: directory + "/") }
            #expect(error?.message == "path names a directory, expected a file name")
        }
    }

    /// Wraps the real calls so that write(2) fails with `code` after `goodWrites` calls, and
    /// records which paths were unlinked.
    private final class ScriptedCalls: @unchecked Sendable {
        let lock = NSLock()
        var writes = 0
        var unlinked: [String] = []

        func calls(failingWriteAfter goodWrites: Int, with code: Int32) -> FileCalls {
            var calls = FileCalls.live
            calls.write = { fd, bytes in
                let count = self.lock.withLock { () -> Int in self.writes += 1; return self.writes }
                if count > goodWrites { return .failure(Errno(code: code)) }
                return FileCalls.live.write(fd, bytes)
            }
            calls.unlink = { path in
                self.lock.withLock { self.unlinked.append(path) }
                return FileCalls.live.unlink(path)
            }
            return calls
        }
    }

    @Test func diskFullRemovesTheTemporaryFileAndKeepsTheOldOne() throws {
        var writer = SafeTensorsWriter()
        try writer.add(name: "a", shape: [4], floats: [1, 2, 3, 4])
        try writer.add(name: "b", shape: [4], floats: [5, 6, 7, 8])
        try withTemporaryDirectory { directory throws in
            let path = directory + "/model.safetensors"
            try writeFile(Array("previous".utf8), to: path)
            // Writes: length prefix, header, a, b. Fail on the third, in the middle of the data.
            let script = ScriptedCalls()
            let error = #expect(throws: SafeTensorsError.self) {
                try writer.write(to: path, calls: script.calls(failingWriteAfter: 2, with: ENOSPC))
            }
            #expect(error?.path == path)
            #expect(error?.message.hasPrefix("cannot write temporary file \(directory)/.model.safetensors.tmp-") == true)
            #expect(error?.message.hasSuffix(": No space left on device") == true)
            #expect(script.unlinked.count == 1 && script.unlinked.first?.hasPrefix(directory + "/.model.safetensors.tmp-") == true)
            #expect(try directoryListing(directory) == ["model.safetensors"])
            #expect(try readFile(path) == Array("previous".utf8))
        }
    }

    @Test func failingFsyncOrRenameRemovesTheTemporaryFile() throws {
        var writer = SafeTensorsWriter()
        try writer.add(name: "a", shape: [1], floats: [1])
        try withTemporaryDirectory { directory throws in
            let path = directory + "/model.safetensors"
            var fsyncFails = FileCalls.live
            fsyncFails.fsync = { _ in .failure(Errno(code: EIO)) }
            let fsyncError = #expect(throws: SafeTensorsError.self) { try writer.write(to: path, calls: fsyncFails) }
            #expect(fsyncError?.message.hasPrefix("cannot fsync temporary file") == true)
            #expect(fsyncError?.message.hasSuffix(": Input/output error") == true)
            #expect(try directoryListing(directory).isEmpty)

            var renameFails = FileCalls.live
            renameFails.rename = { _, _ in .failure(Errno(code: EXDEV)) }
            let renameError = #expect(throws: SafeTensorsError.self) { try writer.write(to: path, calls: renameFails) }
            #expect(renameError?.message.contains("into place: Invalid cross-device link") == true)
            #expect(try directoryListing(directory).isEmpty)
        }
    }

    @Test func shortWritesAreContinued() throws {
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        try writer.add(name: "w", shape: [100], floats: (0..<100).map(Float.init))
        try withTemporaryDirectory { directory throws in
            let path = directory + "/model.safetensors"
            var dribble = FileCalls.live
            // At most 3 bytes per write(2).
            dribble.write = { fd, bytes in
                FileCalls.live.write(fd, UnsafeRawBufferPointer(rebasing: bytes.prefix(3)))
            }
            try writer.write(to: path, calls: dribble)
            #expect(try SafeTensorsFile(path: path).floats("w") == (0..<100).map(Float.init))
        }
    }

    @Test func leftoversOfKilledWritesAreRemovedAndSaid() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/model.m2c"
            try writeFile(Array("previous".utf8), to: path)
            // A writer killed mid-write (a pid that no process has), one still running (ours), and
            // another file's leftover: only the first is removed.
            let dead = ".model.m2c.tmp-2147483646-1f2e", live = ".model.m2c.tmp-\(getpid())-3c4d"
            let other = ".other.m2c.tmp-2147483646-5e6f"
            for name in [dead, live, other] { try writeFile(Array("partial".utf8), to: directory + "/" + name) }
            let notices = Messages()
            WriteNotices.setHandler { notices.append($0) }
            defer { WriteNotices.setHandler(nil) }
            var writer = SafeTensorsWriter()
            try writer.add(name: "a", shape: [1], floats: [1])
            try writer.write(to: path)
            #expect(try directoryListing(directory) == [live, other, "model.m2c"].sorted())
            #expect(try SafeTensorsFile(path: path).floats("a") == [1])
            let said = notices.all.filter { $0.hasPrefix(path + ":") }
            #expect(said.count == 1 && said[0].contains("removed \(dead)") && said[0].contains("interrupted"))
            #expect(AtomicFile.removeLeftovers(of: path).isEmpty)
        }
    }

    @Test func temporaryNameCollisionsAreRetried() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/model.safetensors"
            let attempts = Counter()
            var collides = FileCalls.live
            collides.open = { name, flags, mode in
                attempts.increment() < 3 ? .failure(Errno(code: EEXIST)) : FileCalls.live.open(name, flags, mode)
            }
            try SafeTensorsWriter().write(to: path, calls: collides)
            #expect(attempts.value == 3)
            #expect(try directoryListing(directory) == ["model.safetensors"])
        }
    }
}

/// A thread-safe counter for scripted system calls, which must be `@Sendable`.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    /// Adds one and returns the new count.
    func increment() -> Int { lock.withLock { count += 1; return count } }

    var value: Int { lock.withLock { count } }
}

/// Messages a `WriteNotices` handler received.
private final class Messages: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func append(_ message: String) { lock.withLock { list.append(message) } }
    var all: [String] { lock.withLock { list } }
}
