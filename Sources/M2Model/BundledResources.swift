import CLIPVocabulary
import Foundation

/// Files that ship inside m2clip (package resources).
public enum BundledResources {
    /// CLIP's byte-level BPE vocabulary: `vocab.json` and `merges.txt`.
    public static var tokenizerDirectory: URL? {
        CLIPVocabulary.directory
    }
}
