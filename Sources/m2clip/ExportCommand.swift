import ArgumentParser
import M2Model

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a model file (.m2c) out for the authors' PyTorch code, or only its adapters.",
        discussion: """
        --authors OUT writes the release's state dict (its names, fp32, with the CMLM block and the MLM \
        head) for its load_state_dict; `m2clip convert --authors OUT` reads it back, labels and MLM words \
        included. --adapters OUT writes only the trainable tensors (names with 'adapter') and a fingerprint \
        of the frozen base; `m2clip convert --base BASE.m2c --adapters OUT` puts them back on that base. \
        16-bit models are widened to fp32; int8 models are refused.
        """)

    @Option(help: "The model file (.m2c) to export.")
    var model: String

    @Option(help: "Write the authors' release state dict (safetensors) here.")
    var authors: String?

    @Option(help: "Write only the trainable tensors (safetensors) here.")
    var adapters: String?

    func validate() throws {
        guard (authors == nil) != (adapters == nil) else {
            throw ValidationError("give exactly one of --authors OUT, --adapters OUT")
        }
    }

    func run() throws {
        if let authors {
            let s = try ReleaseExport.writeStateDict(model: model, to: authors)
            print("wrote \(authors): \(s.tensors) tensors, \(s.parameters) parameters, fp32, \(s.bytes) bytes"
                  + (s.widened > 0 ? " (\(s.widened) 16-bit tensors widened)" : ""))
        } else if let adapters {
            let s = try AdapterFile.write(model: model, to: adapters)
            print("wrote \(adapters): \(s.tensors) trainable tensors, \(s.parameters) parameters, fp32, \(s.bytes) bytes")
        }
    }
}
