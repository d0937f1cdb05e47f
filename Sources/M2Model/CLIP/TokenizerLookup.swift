import Foundation

extension CLIPTokenizer {
    /// The checkpoint's own vocabulary when its directory has vocab.json and merges.txt,
    /// else the CLIP vocabulary bundled with m2clip (the same files every CLIP ships).
    public static func forCheckpoint(directory: String) throws -> CLIPTokenizer {
        let dir = URL(fileURLWithPath: directory)
        let files = ["vocab.json", "merges.txt"].map { dir.appendingPathComponent($0).path }
        if files.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) {
            return try CLIPTokenizer(directory: directory)
        }
        return try CLIPTokenizer.bundled()
    }
}
