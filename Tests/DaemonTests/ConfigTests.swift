import Foundation
import Testing
@testable import Daemon

/// m2clipd.yaml parsing and validation: one valid file, then one mistake at a time, each
/// expected to fail with the file and the field path in one line.
@Suite struct ConfigTests {
    /// A directory holding a configuration's files: model.m2c, clip.mp4, run/.
    final class Scratch {
        let dir: URL
        init() throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("m2clip-config-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("run"), withIntermediateDirectories: true)
            try Data("m2c".utf8).write(to: dir.appendingPathComponent("model.m2c"))
            try Data("mp4".utf8).write(to: dir.appendingPathComponent("clip.mp4"))
        }
        deinit {
            try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.appendingPathComponent("run").path)
            try? FileManager.default.removeItem(at: dir)
        }
        var file: String { dir.appendingPathComponent("m2clipd.yaml").path }

        func load(_ yaml: String) throws -> DaemonConfiguration {
            try yaml.write(toFile: file, atomically: true, encoding: .utf8)
            return try DaemonConfiguration.load(path: file)
        }
    }

    static let valid = """
        model: model.m2c
        socket: {path: run/events.sock, mode: "0660"}
        threads: 2
        stats_interval_s: 5
        shutdown_timeout_s: 3
        cameras:
          - id: door
            source: {file: clip.mp4, loop: true}
            sample_fps: 15
            stride: 4
            frames: 4
            head: zero-shot
            thresholds: {start: 0.6, end: 0.4, min_duration_s: 0.5}
            labels: [opening door, closing door]
          - id: yard
            source: {v4l2: /dev/video0, width: 640, height: 480, fps: 30, format: MJPG}
            thresholds: {start: 0.6, end: 0.4}
          - id: gate
            source: {url: "rtsp://10.0.0.5/stream1"}
            head: vc
            thresholds: {start: 0.7, end: 0.5}

        """

    @Test func validFileParsesWithDefaultsAndAbsolutePaths() throws {
        let scratch = try Scratch()
        let config = try scratch.load(Self.valid)
        let dir = scratch.dir.standardizedFileURL.path
        #expect(config.model == dir + "/model.m2c")
        #expect(config.socket.path == dir + "/run/events.sock")
        #expect(config.socket.permissions == 0o660)
        #expect(config.threads == 2)
        #expect(config.statsIntervalSeconds == 5)
        #expect(config.shutdownTimeoutSeconds == 3)
        #expect(config.cameras.map(\.id) == ["door", "yard", "gate"])
        let door = config.cameras[0]
        #expect(door.source == .file(path: dir + "/clip.mp4", loop: true))
        #expect(door.sampleFPS == 15 && door.stride == 4 && door.frames == 4)
        #expect(door.head == .zeroShot)
        #expect(door.thresholds == .init(start: 0.6, end: 0.4, minDurationSeconds: 0.5))
        #expect(door.labels == ["opening door", "closing door"])
        let yard = config.cameras[1]
        #expect(yard.source == .v4l2(device: "/dev/video0", width: 640, height: 480, fps: 30, format: "MJPG"))
        #expect(yard.sampleFPS == 8 && yard.stride == 4 && yard.frames == nil && yard.head == nil && yard.labels == nil)
        #expect(yard.thresholds.minDurationSeconds == 0)
        #expect(config.cameras[2].source == .url("rtsp://10.0.0.5/stream1"))
        #expect(config.cameras[2].head == .vc)
    }

    @Test func optionalTopLevelFieldsDefault() throws {
        let config = try Scratch().load("""
            model: model.m2c
            socket: {path: events.sock}
            cameras: [{id: a, source: {file: clip.mp4}}]
            """)
        #expect(config.threads == nil)
        #expect(config.statsIntervalSeconds == 10)
        #expect(config.shutdownTimeoutSeconds == 5)
        #expect(config.socket.mode == "0660")
        #expect(config.cameras[0].thresholds == .init())
        if case .file(_, let loop) = config.cameras[0].source { #expect(!loop) } else { Issue.record("not a file source") }
    }

    @Test func stateDirectoryFromTheFileOrSystemdAndCreatedOnlyOnStart() throws {
        let scratch = try Scratch()
        let dir = scratch.dir.standardizedFileURL.path
        let base = """
            model: model.m2c
            socket: {path: events.sock}
            cameras: [{id: a, source: {file: clip.mp4}}]
            """
        #expect(try DaemonConfiguration.parse(yaml: base, file: scratch.file, environment: [:]).stateDirectory == nil)
        let systemd = try DaemonConfiguration.parse(yaml: base, file: scratch.file,
                                                    environment: ["STATE_DIRECTORY": dir + ":/var/lib/other"])
        #expect(systemd.stateDirectory == dir)

        let relative = try DaemonConfiguration.parse(yaml: base + "\nstate_dir: state", file: scratch.file,
                                                     environment: ["STATE_DIRECTORY": "/elsewhere"])
        #expect(relative.stateDirectory == dir + "/state")
        #expect(!FileManager.default.fileExists(atPath: dir + "/state"), "validation must not create it")
        #expect(try relative.createStateDirectory() == dir + "/state")
        #expect(try relative.createStateDirectory() == dir + "/state", "an existing one is fine")
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: dir + "/state", isDirectory: &isDirectory) && isDirectory.boolValue)

        for (value, message) in [("model.m2c", "is not a directory"), ("no/such/state", "is not a writable directory")] {
            #expect {
                try DaemonConfiguration.parse(yaml: base + "\nstate_dir: \(value)", file: scratch.file, environment: [:])
            } throws: { error in
                let e = error as? ConfigurationError
                return e?.field == "state_dir" && e?.message.contains(message) == true
            }
        }
    }

    /// (text to replace in `valid`, replacement, the error after "config <file>: ").
    static let mistakes: [(String, String, String)] = [
        ("threads: 2", "threads: 2\nworkers: 3", "workers: unknown key"),
        ("stride: 4", "stride: 4\n    fps: 10", "cameras[0].fps: unknown key"),
        ("{start: 0.6, end: 0.4}", "{start: 0.6, end: 0.4, hold: 1}", "cameras[1].thresholds.hold: unknown key"),
        ("loop: true", "loop: true, speed: 2", "cameras[0].source.speed: unknown key for a file source"),
        ("fps: 30, format: MJPG", "fps: 30, format: MJPG, loop: true", "cameras[1].source.loop: unknown key for a v4l2 source"),
        ("model: model.m2c\n", "", "model: missing"),
        ("threads: 2", "threads: four", "threads: expected an integer"),
        ("sample_fps: 15", "sample_fps: fast", "cameras[0].sample_fps: expected a number"),
        ("- id: yard\n    source:", "- source:", "cameras[1].id: missing"),
        ("- id: yard\n", "- name: yard\n", "cameras[1].name: unknown key"),
        ("labels: [opening door, closing door]", "labels: opening door", "cameras[0].labels: expected a list"),
        ("model: model.m2c", "model: missing.m2c", "model: no model file at"),
        ("model: model.m2c", "model: run", "model: no model file at"),
        ("path: run/events.sock", "path: nowhere/events.sock", "socket.path: directory"),
        ("path: run/events.sock", "path: model.m2c/events.sock", "socket.path: directory"),
        ("mode: \"0660\"", "mode: \"rw\"", "socket.mode: \"rw\" is not an octal mode"),
        ("mode: \"0660\"", "mode: \"0980\"", "socket.mode: \"0980\" is not an octal mode"),
        ("threads: 2", "threads: 0", "threads: must be at least 1 (got 0)"),
        ("stats_interval_s: 5", "stats_interval_s: 0", "stats_interval_s: must be positive"),
        ("shutdown_timeout_s: 3", "shutdown_timeout_s: -1", "shutdown_timeout_s: must not be negative"),
        ("- id: yard", "- id: door", "cameras[1].id: duplicate id \"door\" (also cameras[0])"),
        ("- id: gate", "- id: \"\"", "cameras[2].id: empty id"),
        ("{url: \"rtsp://10.0.0.5/stream1\"}", "{}", "cameras[2].source: needs one of file, v4l2, url"),
        ("{url: \"rtsp://10.0.0.5/stream1\"}", "{url: \"rtsp://x/y\", file: clip.mp4}",
         "cameras[2].source: has both file and url; give one"),
        ("{url: \"rtsp://10.0.0.5/stream1\"}", "{url: \"not a url\"}", "cameras[2].source.url: video not a url: not a stream URL"),
        ("file: clip.mp4", "file: gone.mp4", "cameras[0].source.file: no file at"),
        ("width: 640", "width: 0", "cameras[1].source.width: must be positive (got 0)"),
        ("fps: 30", "fps: 0", "cameras[1].source.fps: must be positive"),
        ("sample_fps: 15", "sample_fps: 0", "cameras[0].sample_fps: must be positive"),
        ("stride: 4", "stride: 0", "cameras[0].stride: must be at least 1 (got 0)"),
        ("frames: 4", "frames: 0", "cameras[0].frames: must be at least 1 (got 0)"),
        ("head: zero-shot", "head: linear", "cameras[0].head: \"linear\" is not vc or zero-shot"),
        ("{start: 0.6, end: 0.4}", "{start: 0.6, end: 0.6}", "cameras[1].thresholds.end: must be below start (0.6)"),
        ("{start: 0.6, end: 0.4}", "{start: 0.6, end: 0.8}", "cameras[1].thresholds.end: must be below start (0.6)"),
        ("{start: 0.6, end: 0.4}", "{start: 1.5, end: 0.4}", "cameras[1].thresholds.start: must be in 0...1"),
        ("{start: 0.6, end: 0.4}", "{end: 0.4}", "cameras[1].thresholds.start: missing"),
        ("min_duration_s: 0.5", "min_duration_s: -2", "cameras[0].thresholds.min_duration_s: must not be negative"),
        ("labels: [opening door, closing door]", "labels: []", "cameras[0].labels: empty list"),
        ("labels: [opening door, closing door]", "labels: [opening door, \" \"]", "cameras[0].labels[1]: empty label"),
        ("labels: [opening door, closing door]", "labels: [a, b, a]", "cameras[0].labels[2]: duplicate label \"a\""),
        ("head: zero-shot", "head: vc", "cameras[0].labels: labels replace the zero-shot label set"),
        ("cameras:\n", "cameras: []\nold_cameras:\n", "old_cameras: unknown key"),
    ]

    @Test(arguments: mistakes.indices)
    func eachMistakeNamesFileAndField(case index: Int) throws {
        let (find, replace, expected) = Self.mistakes[index]
        #expect(Self.valid.contains(find), "case \(index): \(find) not in the valid file")
        let scratch = try Scratch()
        do {
            _ = try scratch.load(Self.valid.replacingOccurrences(of: find, with: replace))
            Issue.record("case \(index): accepted, expected \(expected)")
        } catch let error as ConfigurationError {
            let text = "\(error)"
            #expect(text.hasPrefix("config \(scratch.file): \(expected)"), "case \(index): \(text)")
            #expect(!text.contains("\n"))
        }
    }

    @Test func noCameras() throws {
        let error = #expect(throws: ConfigurationError.self) {
            try Scratch().load("model: model.m2c\nsocket: {path: events.sock}\ncameras: []\n")
        }
        #expect(error?.field == "cameras")
        #expect(error?.message == "no cameras")
    }

    @Test func unquotedModeKeepsItsDigits() throws {
        let config = try Scratch().load(Self.valid.replacingOccurrences(of: "mode: \"0660\"", with: "mode: 0640"))
        #expect(config.socket.permissions == 0o640)
    }

    @Test func notYAMLAndMissingFile() throws {
        let scratch = try Scratch()
        let error = #expect(throws: ConfigurationError.self) { try scratch.load("model: [unclosed\n") }
        #expect(error?.description.hasPrefix("config \(scratch.file): not valid YAML") == true, "\(String(describing: error))")
        #expect(error?.description.contains("\n") == false)

        let missing = scratch.dir.appendingPathComponent("absent.yaml").path
        let absent = #expect(throws: ConfigurationError.self) { try DaemonConfiguration.load(path: missing) }
        #expect(absent?.description.hasPrefix("config \(missing): cannot read the file") == true)
    }

    @Test(.enabled(if: getuid() != 0, "root writes anywhere"))
    func unwritableSocketDirectory() throws {
        let scratch = try Scratch()
        try FileManager.default.setAttributes([.posixPermissions: 0o500],
                                              ofItemAtPath: scratch.dir.appendingPathComponent("run").path)
        let error = #expect(throws: ConfigurationError.self) { try scratch.load(Self.valid) }
        #expect(error?.field == "socket.path")
        #expect(error?.message.hasSuffix("is not writable") == true)
    }
}

extension ConfigTests {
    @Test func historySectionDefaultsOnWithAStateDirectoryAndNamesEachField() throws {
        let scratch = try Scratch()
        let dir = scratch.dir.standardizedFileURL.path
        let base = "model: model.m2c\nsocket: {path: events.sock}\ncameras: [{id: a, source: {file: clip.mp4}}]\n"
        func parse(_ extra: String, stateDirectory: String? = dir) throws -> DaemonConfiguration {
            try DaemonConfiguration.parse(yaml: base + extra, file: scratch.file,
                                          environment: stateDirectory.map { ["STATE_DIRECTORY": $0] } ?? [:])
        }
        #expect(try parse("").historyDatabase == dir + "/events.sqlite")
        #expect(try parse("", stateDirectory: nil).historyDatabase == nil, "no state directory: no history, no error")
        #expect(try parse("history: {enabled: false}").historyDatabase == nil)
        let custom = try parse("history: {retention_days: 2, max_mb: 8}")
        #expect(custom.history.retention == EventStore.Retention(maxAgeSeconds: 2 * 86_400, maxBytes: 8 << 20))
        for (extra, field, message) in [
            ("history: {enabled: true}", "history.enabled", "needs a state directory"),
            ("history: {retention_days: 0}", "history.retention_days", "must be positive (got 0.0)"),
            ("history: {max_mb: 0.5}", "history.max_mb", "must be at least 1 (got 0.5)"),
            ("history: {keep: 3}", "history.keep", "unknown key"),
        ] {
            #expect {
                try parse(extra, stateDirectory: field == "history.enabled" ? nil : dir)
            } throws: { error in
                let e = error as? ConfigurationError
                return e?.field == field && e?.message.contains(message) == true && e?.file == scratch.file
            }
        }
    }
}
