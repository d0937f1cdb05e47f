import Daemon
import Foundation
import M2Model
import Ops
import SafeTensors
import Training
import Video

/// Every parser that reads what others write, as one fuzz entry point each (issue 11). A target
/// takes arbitrary bytes and must return: an error is the right answer for bad input, a trap or
/// a memory error is a bug. `Fuzz/m2clip-fuzz` runs them under libFuzzer with AddressSanitizer
/// (scripts/fuzz.sh); `FuzzCorpusTests` replays the committed corpora and every crash found,
/// in the plain test suite.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// The safetensors length prefix, header and tensor table, then every tensor read.
    case safetensors
    /// The safetensors header's JSON parser.
    case json
    /// A model file's `__metadata__`: the configuration JSON (decoded and validated) and the labels.
    case modelMetadata = "model-metadata"
    /// A Hugging Face `config.json`.
    case hfConfig = "hf-config"
    /// `vocab.json` and `merges.txt` (split at the first NUL byte), then tokenizing with them.
    case tokenizer
    /// m2clipd's YAML configuration.
    case daemonConfig = "daemon-config"
    /// A subscriber's line (subscribe, filters, since).
    case subscribeLine = "subscribe-line"
    /// Training list files: mmaction2 lines and CSV.
    case clipList = "clip-list"
    /// A training batch file (`m2clip train grad --batch`) for a tiny model.
    case batch
    /// A V4L2 buffer: the first byte picks YUYV, NV12 or MJPEG and the size, the rest is the frame.
    case v4l2Frame = "v4l2-frame"
    /// A camera's stream URL.
    case streamURL = "stream-url"

    /// Builds what the target keeps for every input (the batch target's model), before the
    /// fuzzer starts: its setup is not charged to the first input's time limit, which a loaded
    /// machine made it exceed.
    public func prepare() {
        if self == .batch { _ = BatchModel.shared }
    }

    /// Runs the target on one input.
    public func run(_ data: UnsafeRawBufferPointer) {
        _ = accepts(data)
    }

    /// Runs the target on one input; true when the parser took it as valid.
    func accepts(_ data: UnsafeRawBufferPointer) -> Bool {
        switch self {
        case .safetensors: return Self.safetensors(data)
        case .json: return (try? JSONParser.parse(data)) != nil
        case .modelMetadata: return Self.modelMetadata(data)
        case .hfConfig: return (try? CLIPConfiguration.load(path: Scratch.file("config.json", data))) != nil
        case .tokenizer: return Self.tokenizer(data)
        case .daemonConfig:
            return (try? DaemonConfiguration.parse(yaml: String(decoding: data, as: UTF8.self), file: "fuzz.yaml")) != nil
        case .subscribeLine:
            if case .success = SubscribeRequest.parse(Array(data)) { return true }
            return false
        case .clipList: return Self.clipList(data)
        case .batch: return Self.batch(data)
        case .v4l2Frame: return Self.v4l2Frame(data)
        case .streamURL:
            let text = String(decoding: data, as: UTF8.self)
            _ = StreamURL.redacting(text)
            guard let url = try? StreamURL(text) else { return false }
            _ = url.description
            return true
        }
    }

    /// `accepts` on bytes (tests).
    static func accepts(_ target: FuzzTarget, _ data: Data) -> Bool {
        data.withUnsafeBytes { target.accepts($0) }
    }

    /// The target named by `M2CLIP_FUZZ_TARGET` (the fuzz binary's choice).
    public static func fromEnvironment() -> FuzzTarget {
        let name = ProcessInfo.processInfo.environment["M2CLIP_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            let known = allCases.map(\.rawValue).joined(separator: ", ")
            FileHandle.standardError.write(Data("M2CLIP_FUZZ_TARGET must be one of: \(known) (got \"\(name)\")\n".utf8))
            exit(2)
        }
        return target
    }

    // MARK: - targets

    private static func safetensors(_ data: UnsafeRawBufferPointer) -> Bool {
        guard let file = try? SafeTensorsFile(path: Scratch.file("input.safetensors", data)) else { return false }
        _ = file.metadata
        var readable = true
        for name in file.names {
            guard let info = file.info(name) else { continue }
            readable = readable && (try? file.bytes(name)) != nil
            if [.f32, .f16, .bf16].contains(info.dtype) { readable = readable && (try? file.floats(name)) != nil }
        }
        return readable
    }

    private static func modelMetadata(_ data: UnsafeRawBufferPointer) -> Bool {
        let bytes = Data(data)
        var valid = false
        if let c = try? JSONDecoder().decode(M2CLIPConfiguration.self, from: bytes) {
            valid = (try? c.validate(source: "fuzz")) != nil
            _ = c.prompt(for: "x")
        }
        let labels = (try? JSONDecoder().decode([String].self, from: bytes)) != nil
        return valid || labels
    }

    private static func tokenizer(_ data: UnsafeRawBufferPointer) -> Bool {
        let bytes = Array(data)
        let split = bytes.firstIndex(of: 0) ?? bytes.count
        let vocabulary = Array(bytes[..<split]), merges = split < bytes.count ? Array(bytes[(split + 1)...]) : []
        guard let tokenizer = try? CLIPTokenizer(vocabularyJSON: vocabulary, merges: merges, source: "fuzz") else {
            return false
        }
        for text in ["A video of juggling", "naïve café – ½ 🙂", String(decoding: merges.prefix(64), as: UTF8.self)] {
            _ = tokenizer.encode(text, contextLength: 77)
        }
        return true
    }

    static let clipLabels = ["juggling", "wrestling", "arm wrestling", "moving left", "a,b"]

    private static func clipList(_ data: UnsafeRawBufferPointer) -> Bool {
        var any = false
        for (name, format) in [("list.txt", ClipList.Format.mmaction), ("list.csv", .csv)] {
            any = (try? ClipList.read(Scratch.file(name, data), labels: clipLabels, format: format)) != nil || any
        }
        return any
    }

    private static func batch(_ data: UnsafeRawBufferPointer) -> Bool {
        guard let model = BatchModel.shared else { return false }
        return (try? TrainingBatch.read(path: Scratch.file("batch.safetensors", data), for: model)) != nil
    }

    private static func v4l2Frame(_ data: UnsafeRawBufferPointer) -> Bool {
        guard let first = data.first else { return false }
        let formats: [V4L2PixelFormat] = [.yuyv, .nv12, .mjpeg]
        let format = formats[Int(first) % 3]
        let width = 2 * (1 + Int(first >> 2) % 16), height = 2 * (1 + Int(first >> 6) % 4) * 4
        let bytesPerLine = format == .mjpeg ? 0 : (format == .yuyv ? 2 * width : width)
        let sizeImage = format == .yuyv ? 2 * width * height : (format == .nv12 ? width * height * 3 / 2 : data.count)
        let layout = V4L2FrameLayout(format: format, width: width, height: height, bytesPerLine: bytesPerLine,
                                     sizeImage: sizeImage)
        let decoder = V4L2FrameDecoder(layout: layout)
        if case .success = decoder.decode(UnsafeRawBufferPointer(rebasing: data.dropFirst()), sequence: 0, timestamp: 0) {
            return true
        }
        return false
    }
}

/// The tiny model the batch target reads batches for: a random tiny CLIP converted to M²-CLIP
/// (CMLM head included), 2 frames, labels "a" and "b". Built once per process.
enum BatchModel {
    static let shared: TrainingModel? = {
        do {
            let context = try ComputeContext(threads: 1)
            let file = Scratch.directory + "/batch-model.m2c"
            if !FileManager.default.fileExists(atPath: file) {
                try RandomCheckpoint.writeModelFile(preset: .tiny, seed: 1, labels: ["a", "b"], frames: 2, to: file,
                                                    context: context)
            }
            return try TrainingModel(modelFile: file, context: context)
        } catch {
            FileHandle.standardError.write(Data("fuzz: cannot build the batch target's model: \(error)\n".utf8))
            return nil
        }
    }()
}

/// One scratch directory per process for targets whose parser reads a file.
enum Scratch {
    static let directory: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = base + "/m2clip-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Scratch.directory) }
        return path
    }()

    /// `data` written to `name` in the scratch directory; its path.
    static func file(_ name: String, _ data: UnsafeRawBufferPointer) -> String {
        let path = directory + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(data))
        return path
    }
}
