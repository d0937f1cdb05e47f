import Foundation
import ArgumentParser
import SafeTensors

@main
struct M2CLIPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "m2clip",
        abstract: "M²-CLIP video action recognition on the CPU.",
        subcommands: [ClassifyCommand.self, ConvertCommand.self, QuantizeCommand.self, InspectCommand.self,
                      LabelsCommand.self, EmbedCommand.self, SubscribeCommand.self, EventsCommand.self, TrainCommand.self, EvalCommand.self,
                      BenchCommand.self, RandomCheckpointCommand.self, ExportCommand.self])

    /// A write past a file-size limit (ulimit -f) fails with EFBIG and is reported, naming the
    /// file, like any write error — instead of SIGXFSZ killing the process mid-run.
    /// What a model or checkpoint write found and cleaned up (the partial file of a write that a
    /// kill or crash interrupted) is said on stderr.
    static func main() {
        signal(SIGXFSZ, SIG_IGN)
        WriteNotices.setHandler { FileHandle.standardError.write(Data("m2clip: note: \($0)\n".utf8)) }
        main(nil)
    }
}

/// Options every command that runs the engine shares.
struct EngineOptions: ParsableArguments {
    @Option(help: "Worker threads including the caller (default: every online CPU).")
    var threads: Int?

    @Option(help: "Force a kernel variant: scalar, avx2, avx512 or neon (default: the best this CPU runs).")
    var kernels: String?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let kernels, KernelVariantName(rawValue: kernels) == nil {
            throw ValidationError("--kernels must be one of scalar, avx2, avx512, neon; got \(kernels)")
        }
    }
}

enum KernelVariantName: String { case scalar, avx2, avx512, neon }
