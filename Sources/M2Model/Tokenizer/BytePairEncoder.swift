import Foundation

/// Byte-level BPE of single words, as the `BPE` model of Hugging Face `tokenizers` computes it
/// with `end_of_word_suffix = "</w>"` (the CLIP configuration).
///
/// A word starts as one symbol per UTF-8 byte, the last one carrying the `</w>` suffix; then,
/// until no adjacent pair has a merge, the pair with the lowest merge rank (the leftmost among
/// equal ranks) is replaced by the merge's result. This is `Word::merge_all` of `tokenizers`,
/// including its priority queue of candidate merges, so that merge tables in which one token can
/// be made in two ways still give its answers.
struct BytePairEncoder: Sendable {
    struct Merge: Sendable {
        /// Position in merges.txt: lower merges first.
        var rank: Int32
        /// Id of the concatenation of the two symbols.
        var result: Int32
    }

    /// Id of the symbol of each byte inside a word, or the unknown id. (256)
    let symbolIDs: [Int32]
    /// Id of the symbol of each byte followed by `</w>`, which ends a word. (256)
    let finalSymbolIDs: [Int32]
    /// Merges keyed by `pairKey(left, right)`.
    let merges: [UInt64: Merge]

    static let endOfWordSuffix = Array("</w>".utf8)

    /// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the others are
    /// moved to U+0100 and up, so that every byte has a visible character in vocab.json.
    static let byteSymbols: [Unicode.Scalar] = {
        var symbols = [Unicode.Scalar?](repeating: nil, count: 256)
        var printable: [UInt8] = Array(0x21...0x7E)
        printable += Array(0xA1...0xAC)
        printable += Array(0xAE...0xFF)
        for byte in printable { symbols[Int(byte)] = Unicode.Scalar(byte) }
        var next: UInt32 = 256
        for byte in 0..<256 where symbols[byte] == nil {
            symbols[byte] = Unicode.Scalar(next)
            next += 1
        }
        return symbols.map { $0! }
    }()

    /// Builds the tables; a merge whose symbols or result are not tokens is an error of `mergesPath`.
    init(
        vocabulary: [[UInt8]: Int32], merges mergeLines: [TokenizerFiles.MergeLine],
        unknownID: Int32, mergesPath: String
    ) throws(TokenizerError) {
        var symbolIDs: [Int32] = []
        var finalSymbolIDs: [Int32] = []
        for symbol in Self.byteSymbols {
            let utf8 = Array(String(symbol).utf8)
            symbolIDs.append(vocabulary[utf8] ?? unknownID)
            finalSymbolIDs.append(vocabulary[utf8 + Self.endOfWordSuffix] ?? unknownID)
        }
        self.symbolIDs = symbolIDs
        self.finalSymbolIDs = finalSymbolIDs

        var merges: [UInt64: Merge] = [:]
        merges.reserveCapacity(mergeLines.count)
        for (rank, merge) in mergeLines.enumerated() {
            func id(of token: [UInt8], _ role: String) throws(TokenizerError) -> Int32 {
                guard let id = vocabulary[token] else {
                    let pair = String(decoding: merge.left, as: UTF8.self) + " " + String(decoding: merge.right, as: UTF8.self)
                    throw TokenizerError(
                        file: mergesPath, line: merge.line,
                        message: "merge \(pair.debugDescription): \(role) \(String(decoding: token, as: UTF8.self).debugDescription) is not in the vocabulary")
                }
                return id
            }
            let left = try id(of: Array(merge.left), "symbol")
            let right = try id(of: Array(merge.right), "symbol")
            let result = try id(of: Array(merge.left) + Array(merge.right), "result")
            // A pair listed twice keeps its last rank, as the map built by `tokenizers` does.
            merges[Self.pairKey(left, right)] = Merge(rank: Int32(rank), result: result)
        }
        self.merges = merges
    }

    @inline(__always)
    static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// Appends the ids of one word (its UTF-8 bytes, not empty) to `ids`.
    func encode(word: [UInt8], into ids: inout [Int32]) {
        let count = word.count
        if count == 1 {
            ids.append(finalSymbolIDs[Int(word[0])])
            return
        }
        // A doubly linked list over the initial symbols; a merge keeps the left position.
        var symbols = word.map { symbolIDs[Int($0)] }
        symbols[count - 1] = finalSymbolIDs[Int(word[count - 1])]
        var previous = Array(-1..<(count - 1))
        var next = Array(1...count)
        next[count - 1] = -1
        var removed = [Bool](repeating: false, count: count)

        var queue = MergeQueue()
        for position in 0..<(count - 1) {
            if let merge = merges[Self.pairKey(symbols[position], symbols[position + 1])] {
                queue.push(.init(rank: merge.rank, position: Int32(position), result: merge.result))
            }
        }
        while let top = queue.popMin() {
            let position = Int(top.position)
            let right = next[position]
            // Skip entries made stale by an earlier merge at either end of the pair.
            guard !removed[position], right != -1,
                  let merge = merges[Self.pairKey(symbols[position], symbols[right])],
                  merge.result == top.result else { continue }

            symbols[position] = top.result
            removed[right] = true
            next[position] = next[right]
            if next[right] != -1 { previous[next[right]] = position }

            if previous[position] != -1,
               let merge = merges[Self.pairKey(symbols[previous[position]], symbols[position])] {
                queue.push(.init(rank: merge.rank, position: Int32(previous[position]), result: merge.result))
            }
            if next[position] != -1,
               let merge = merges[Self.pairKey(symbols[position], symbols[next[position]])] {
                queue.push(.init(rank: merge.rank, position: Int32(position), result: merge.result))
            }
        }
        var position = 0
        while position != -1 {
            ids.append(symbols[position])
            position = next[position]
        }
    }
}

/// A binary min-heap of candidate merges ordered by (rank, position).
private struct MergeQueue {
    struct Entry {
        var rank: Int32
        var position: Int32
        var result: Int32

        @inline(__always)
        static func < (a: Entry, b: Entry) -> Bool {
            a.rank != b.rank ? a.rank < b.rank : a.position < b.position
        }
    }

    private var heap: [Entry] = []

    mutating func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child] < heap[parent] else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popMin() -> Entry? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count, heap[left] < heap[smallest] { smallest = left }
                if right < heap.count, heap[right] < heap[smallest] { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}

/// Ids of recently encoded words, shared by copies of a tokenizer and safe across threads.
///
/// Like the cache of `tokenizers`' BPE: words up to 256 bytes, emptied when 10,000 are held.
final class WordCache: @unchecked Sendable {
    static let maximumWordLength = 256
    static let capacity = 10_000

    private let lock = NSLock()
    private var ids: [[UInt8]: [Int32]] = [:]  // guarded by lock

    func lookup(_ word: [UInt8]) -> [Int32]? {
        guard word.count <= Self.maximumWordLength else { return nil }
        return lock.withLock { ids[word] }
    }

    func store(_ word: [UInt8], _ wordIDs: [Int32]) {
        guard word.count <= Self.maximumWordLength else { return }
        lock.withLock {
            if ids.count >= Self.capacity { ids.removeAll(keepingCapacity: true) }
            ids[word] = wordIDs
        }
    }
}
