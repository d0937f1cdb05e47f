import Foundation
import Ops

extension EngineOptions {
    /// The compute context these options ask for; warns on stderr when M2CLIP_KERNELS
    /// named a variant this CPU cannot run.
    func makeContext() throws -> ComputeContext {
        if let warning = ComputeContext.dispatchWarning { printError("warning: \(warning)") }
        return try ComputeContext(threads: threads, variant: kernels.flatMap(KernelVariant.init(rawValue:)))
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Pretty JSON with keys in a stable order, on stdout.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
