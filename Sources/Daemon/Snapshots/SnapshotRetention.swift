import Foundation
import Logging
import SafeTensors

/// Which snapshot files to delete: temporary files a crash left mid-write, every file older
/// than `maxAge`, then, oldest first, files until the rest fit in `maxBytes`. Age is the file's
/// modification time (when its last version was written). Pure: the caller lists the files
/// and removes the victims (on the writer's thread, so no temporary file is in use then).
enum SnapshotRetention {
    struct StoredFile: Equatable {
        var path: String
        /// Modification time, seconds since 1970.
        var modified: Double
        var bytes: Int64
    }

    /// The files to delete, oldest first (ties: by path, so the order is reproducible).
    static func victims(_ files: [StoredFile], now: Double, maxAge: Double, maxBytes: Int64) -> [StoredFile] {
        let isTemporary = { (file: StoredFile) in
            AtomicFile.isTemporary(URL(fileURLWithPath: file.path).lastPathComponent)
        }
        let oldestFirst = files.sorted { ($0.modified, $0.path) < ($1.modified, $1.path) }
        var out = oldestFirst.filter(isTemporary)
        var total = files.reduce(Int64(0)) { $0 + $1.bytes } - out.reduce(Int64(0)) { $0 + $1.bytes }
        for file in oldestFirst where !isTemporary(file) {
            guard now - file.modified > maxAge || total > maxBytes else { break }
            out.append(file)
            total -= file.bytes
        }
        return out
    }

    /// Every regular file under `directory` (snapshots and temporary files a crash left).
    static func scan(_ directory: String) -> [StoredFile] {
        let root = URL(fileURLWithPath: directory)
        let keys: [URLResourceKey] = [.isRegularFileKey, .contentModificationDateKey, .fileSizeKey]
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: keys) else { return [] }
        var files: [StoredFile] = []
        for case let url as URL in walker {
            guard let values = try? url.resourceValues(forKeys: Set(keys)), values.isRegularFile == true else { continue }
            files.append(StoredFile(path: url.path, modified: values.contentModificationDate?.timeIntervalSince1970 ?? 0,
                                    bytes: Int64(values.fileSize ?? 0)))
        }
        return files
    }

    /// Deletes the victims under `directory` and the directories they leave empty (below
    /// `directory`); returns how many files went and the bytes that remain.
    static func prune(_ directory: String, now: Double, maxAge: Double, maxBytes: Int64,
                      log: (Logger.Level, String) -> Void) -> (deleted: Int, remaining: Int64) {
        let files = scan(directory)
        var remaining = files.reduce(Int64(0)) { $0 + $1.bytes }
        var deleted = 0
        var parents = Set<String>()
        for victim in victims(files, now: now, maxAge: maxAge, maxBytes: maxBytes) {
            do {
                try FileManager.default.removeItem(atPath: victim.path)
                deleted += 1
                remaining -= victim.bytes
                parents.insert(URL(fileURLWithPath: victim.path).deletingLastPathComponent().path)
            } catch {
                log(.error, "snapshot retention: cannot delete \(victim.path) (\(error.localizedDescription))")
            }
        }
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path
        for parent in parents.sorted(by: >) {
            var dir = URL(fileURLWithPath: parent).standardizedFileURL
            // Upwards (day, then camera) while empty; never `directory` itself.
            while dir.path.count > root.count, dir.path.hasPrefix(root + "/"),
                  (try? FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty) == true {
                try? FileManager.default.removeItem(at: dir)
                dir.deleteLastPathComponent()
            }
        }
        return (deleted, remaining)
    }
}

/// A writer's directory under retention (snapshots, clips): the bytes written there and the
/// pruning by `maxAge` seconds and `maxBytes`. Used on the writer's thread only.
/// What a writer of retained files (snapshots, clips) did, for the stats event and metrics.
public struct RetainedFileCounters: Codable, Sendable, Equatable {
    /// Files written (a replaced version counts again).
    public var written = 0
    /// Files dropped because the writer's queue was full.
    public var dropped = 0
    /// Files that could not be made or written (nothing to write, encode, mux or disk failure).
    public var failed = 0
    /// Files retention deleted.
    public var deleted = 0

    public init(written: Int = 0, dropped: Int = 0, failed: Int = 0, deleted: Int = 0) {
        self.written = written; self.dropped = dropped; self.failed = failed; self.deleted = deleted
    }
}

struct RetainedDirectory {
    let directory: String
    let maxAge: Double
    let maxBytes: Int64
    /// Bytes of the files there, as of the last prune plus what was written since.
    private(set) var bytes: Int64 = 0

    init(directory: String, retentionDays: Double, maxBytes: Int64) {
        self.directory = directory
        maxAge = retentionDays * 86_400
        self.maxBytes = maxBytes
    }

    var isOverBudget: Bool { bytes > maxBytes }

    /// A file grew (or was replaced) by `delta` bytes.
    mutating func wrote(_ delta: Int64) { bytes += delta }

    /// `SnapshotRetention.prune` now; returns how many files went.
    mutating func prune(log: (Logger.Level, String) -> Void) -> Int {
        let result = SnapshotRetention.prune(directory, now: Date().timeIntervalSince1970, maxAge: maxAge,
                                             maxBytes: maxBytes, log: log)
        bytes = result.remaining
        return result.deleted
    }
}
