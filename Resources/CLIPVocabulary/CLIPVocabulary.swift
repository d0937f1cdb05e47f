import Foundation

/// CLIP's byte-level BPE vocabulary (`vocab.json`, `merges.txt`, as every CLIP checkpoint
/// ships them), bundled so that m2clip can tokenize without a checkpoint directory. Data, not
/// code: it lives outside Sources/.
public enum CLIPVocabulary {
    /// The folder holding vocab.json and merges.txt.
    public static var directory: URL? {
        Bundle.module.url(forResource: "clip-tokenizer", withExtension: nil)
    }
}
