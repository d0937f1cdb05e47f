import ArgumentParser
import M2Model

struct RandomCheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "random-checkpoint",
        abstract: "Write an UNTRAINED CLIP checkpoint with random weights (Hugging Face layout), for latency measurement and smoke tests.")

    @Option(help: "Model size: \(RandomCheckpoint.Preset.allCases.map(\.rawValue).joined(separator: ", ")).")
    var preset: String = RandomCheckpoint.Preset.vitB16.rawValue

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    func validate() throws {
        if RandomCheckpoint.Preset(rawValue: preset) == nil {
            throw ValidationError("--preset must be one of \(RandomCheckpoint.Preset.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let preset = RandomCheckpoint.Preset(rawValue: preset)!
        try RandomCheckpoint.write(configuration: preset.configuration, to: out, seed: seed)
        print("wrote untrained \(preset.rawValue) checkpoint (random weights) to \(out)")
    }
}
