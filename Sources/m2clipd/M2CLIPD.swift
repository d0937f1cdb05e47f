import ArgumentParser
import Daemon
import Logging
#if canImport(Glibc)
import Glibc
#endif

@main
struct M2CLIPD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "m2clipd",
        abstract: "M²-CLIP action events from cameras and video files, over a Unix socket (NDJSON).",
        discussion: "Runs under systemd (Type=notify) or from a shell; see systemd/ and docs/events.schema.json.")

    /// A write past a file-size limit (ulimit -f, LimitFSIZE=) fails with EFBIG, which the
    /// event history counts and retries like a full disk, instead of SIGXFSZ killing the daemon.
    static func main() {
        signal(SIGXFSZ, SIG_IGN)
        main(nil)
    }

    @Option(help: "The YAML configuration to run.")
    var config: String?

    @Option(name: .customLong("check-config"), help: "Validate a configuration file and exit.")
    var checkConfig: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical. Under systemd the log goes to the journal with CAMERA=, LABEL=… fields.")
    var logLevel = "info"

    func validate() throws {
        if Logger.Level(name: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(logLevel)")
        }
        if (config == nil) == (checkConfig == nil) {
            throw ValidationError("give --config FILE to run, or --check-config FILE to validate")
        }
    }

    func run() throws {
        if let checkConfig {
            let c = try DaemonRuntime.loadRunnable(path: checkConfig)
            print("\(checkConfig): ok (\(c.cameras.count) camera(s), model \(c.model), socket \(c.socket.path))")
            return
        }
        let logger = DaemonRuntime.defaultLogger(level: Logger.Level(name: logLevel) ?? .info)
        try DaemonRuntime(configurationPath: config!, logger: logger).run()
    }
}
