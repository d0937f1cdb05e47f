import Foundation
import Video
import Yams

extension DaemonConfiguration {
    /// Reads and validates the YAML file at `path`. Relative paths in it (model, socket, file
    /// sources) are resolved against the file's directory, so the result holds absolute ones.
    ///
    /// Throws `ConfigurationError` naming the file and the field: unknown keys, missing or
    /// mistyped values, out-of-range numbers, `end ≥ start`, duplicate camera ids, a missing
    /// model or source file, a socket directory that is missing or not writable.
    public static func load(path: String) throws -> DaemonConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(file: path, field: "", "cannot read the file (\(error.localizedDescription))")
        }
        return try parse(yaml: text, file: path)
    }

    /// `load` on text already read; `file` names it in errors and anchors relative paths.
    /// - Parameter environment: where `$STATE_DIRECTORY` (systemd's `StateDirectory=`) is read
    ///   when the file has no `state_dir`.
    public static func parse(yaml: String, file: String,
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DaemonConfiguration {
        var config: DaemonConfiguration
        do {
            config = try YAMLDecoder().decode(DaemonConfiguration.self, from: yaml)
        } catch {
            throw translate(error, file: file)
        }
        if config.stateDirectory == nil, let fromSystemd = environment["STATE_DIRECTORY"] {
            // systemd joins several StateDirectory= entries with ':'; the first is ours.
            config.stateDirectory = fromSystemd.split(separator: ":").first.map(String.init)
        }
        try config.validate(file: file)
        return config
    }

    /// Checks values and files, resolving relative paths against `file`'s directory.
    mutating func validate(file: String) throws {
        func fail(_ field: String, _ message: String) -> ConfigurationError {
            ConfigurationError(file: file, field: field, message)
        }
        let base = URL(fileURLWithPath: file).deletingLastPathComponent()
        func resolve(_ p: String) -> String {
            p.hasPrefix("/") ? p : base.appendingPathComponent(p).standardizedFileURL.path
        }
        let fm = FileManager.default
        var isDirectory: ObjCBool = false

        guard !model.isEmpty else { throw fail("model", "empty path") }
        model = resolve(model)
        guard fm.fileExists(atPath: model, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw fail("model", "no model file at \(model)")
        }
        guard fm.isReadableFile(atPath: model) else { throw fail("model", "\(model) is not readable") }

        guard !socket.path.isEmpty else { throw fail("socket.path", "empty path") }
        socket.path = resolve(socket.path)
        let socketDirectory = URL(fileURLWithPath: socket.path).deletingLastPathComponent().path
        guard fm.fileExists(atPath: socketDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw fail("socket.path", "directory \(socketDirectory) does not exist")
        }
        guard fm.isWritableFile(atPath: socketDirectory) else {
            throw fail("socket.path", "directory \(socketDirectory) is not writable")
        }
        guard (3...4).contains(socket.mode.count), socket.mode.allSatisfy({ ("0"..."7").contains($0) }) else {
            throw fail("socket.mode", "\"\(socket.mode)\" is not an octal mode like \"0660\"")
        }

        if let directory = stateDirectory {
            // Checked, not created: validation has no side effects (`--check-config`, fuzzing);
            // the daemon creates a missing one when it starts (`createStateDirectory`).
            guard !directory.isEmpty else { throw fail("state_dir", "empty path") }
            let resolved = resolve(directory)
            if fm.fileExists(atPath: resolved, isDirectory: &isDirectory) {
                guard isDirectory.boolValue else { throw fail("state_dir", "\(resolved) is not a directory") }
                guard fm.isWritableFile(atPath: resolved) else { throw fail("state_dir", "\(resolved) is not writable") }
            } else {
                let parent = URL(fileURLWithPath: resolved).deletingLastPathComponent().path
                guard fm.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue,
                      fm.isWritableFile(atPath: parent) else {
                    throw fail("state_dir", "\(resolved) does not exist and \(parent) is not a writable directory to create it in")
                }
            }
            stateDirectory = resolved
        }
        try history.validate(stateDirectory: stateDirectory, fail: fail)

        if let threads, threads < 1 { throw fail("threads", "must be at least 1 (got \(threads))") }
        guard statsIntervalSeconds > 0 else { throw fail("stats_interval_s", "must be positive (got \(statsIntervalSeconds))") }
        guard shutdownTimeoutSeconds >= 0 else {
            throw fail("shutdown_timeout_s", "must not be negative (got \(shutdownTimeoutSeconds))")
        }

        guard !cameras.isEmpty else { throw fail("cameras", "no cameras") }
        var seen: [String: Int] = [:]
        for i in cameras.indices {
            let at = "cameras[\(i)]"
            var camera = cameras[i]
            guard !camera.id.isEmpty else { throw fail("\(at).id", "empty id") }
            if let first = seen[camera.id] {
                throw fail("\(at).id", "duplicate id \"\(camera.id)\" (also cameras[\(first)])")
            }
            seen[camera.id] = i
            switch camera.source {
            case .file(let path, let loop):
                let resolved = resolve(path)
                guard fm.fileExists(atPath: resolved, isDirectory: &isDirectory), !isDirectory.boolValue else {
                    throw fail("\(at).source.file", "no file at \(resolved)")
                }
                camera.source = .file(path: resolved, loop: loop)
            case .v4l2(let device, let width, let height, let fps, let format):
                guard !device.isEmpty else { throw fail("\(at).source.v4l2", "empty device") }
                if let format, V4L2PixelFormat(rawValue: format) == nil {
                    throw fail("\(at).source.format", "\"\(format)\" is not one of "
                        + V4L2PixelFormat.allCases.map(\.rawValue).joined(separator: ", "))
                }
                guard width > 0 else { throw fail("\(at).source.width", "must be positive (got \(width))") }
                guard height > 0 else { throw fail("\(at).source.height", "must be positive (got \(height))") }
                guard fps > 0 else { throw fail("\(at).source.fps", "must be positive (got \(fps))") }
            case .url(let url):
                do {
                    _ = try StreamURL(url)
                } catch let error as VideoError {
                    throw fail("\(at).source.url", "\(error)")
                }
            }
            guard camera.sampleFPS > 0, camera.sampleFPS.isFinite else {
                throw fail("\(at).sample_fps", "must be positive (got \(camera.sampleFPS))")
            }
            guard camera.stride >= 1 else { throw fail("\(at).stride", "must be at least 1 (got \(camera.stride))") }
            guard camera.stallTimeoutSeconds > 0, camera.stallTimeoutSeconds.isFinite else {
                throw fail("\(at).stall_timeout_s", "must be positive (got \(camera.stallTimeoutSeconds))")
            }
            if let frames = camera.frames, frames < 1 {
                throw fail("\(at).frames", "must be at least 1 (got \(frames))")
            }
            let t = camera.thresholds
            guard (0...1).contains(t.start) else { throw fail("\(at).thresholds.start", "must be in 0...1 (got \(t.start))") }
            guard (0...1).contains(t.end) else { throw fail("\(at).thresholds.end", "must be in 0...1 (got \(t.end))") }
            guard t.end < t.start else {
                throw fail("\(at).thresholds.end", "must be below start (\(t.start))")
            }
            guard t.minDurationSeconds >= 0 else {
                throw fail("\(at).thresholds.min_duration_s", "must not be negative (got \(t.minDurationSeconds))")
            }
            if let labels = camera.labels {
                guard !labels.isEmpty else { throw fail("\(at).labels", "empty list (leave it out to use the model's labels)") }
                if let j = labels.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
                    throw fail("\(at).labels[\(j)]", "empty label")
                }
                if let j = labels.indices.first(where: { labels[..<$0].contains(labels[$0]) }) {
                    throw fail("\(at).labels[\(j)]", "duplicate label \"\(labels[j])\"")
                }
                if camera.head == .vc { throw fail("\(at).labels", "labels replace the zero-shot label set; head vc cannot use them") }
            }
            cameras[i] = camera
        }
        try mqtt?.validate(cameras: cameras, resolve: resolve, fail: fail)
        try metrics?.validate(fail: fail)
        try snapshots?.validate(stateDirectory: stateDirectory, fail: fail)
        try clips?.validate(cameras: cameras, stateDirectory: stateDirectory, fail: fail)
    }

    /// Creates `stateDirectory` (mode 0750) when it is missing; returns it.
    @discardableResult
    public func createStateDirectory() throws -> String? {
        guard let stateDirectory else { return nil }
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o750])
        } catch CocoaError.fileWriteFileExists {
        } catch where FileManager.default.fileExists(atPath: stateDirectory) {
        } catch {
            throw ConfigurationError(file: "", field: "state_dir", "cannot create \(stateDirectory) (\(error.localizedDescription))")
        }
        return stateDirectory
    }

    static func fieldPath(_ keys: [CodingKey]) -> String {
        var out = ""
        for key in keys {
            if let index = key.intValue {
                out += "[\(index)]"
            } else {
                out += (out.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return out
    }

    /// A decoding failure as a configuration error. YAMLDecoder wraps everything it did not
    /// throw itself (parser errors, our `FieldError`) in `dataCorrupted`; unwrap that.
    static func translate(_ error: Error, file: String) -> ConfigurationError {
        if let error = error as? FieldError {
            return ConfigurationError(file: file, field: fieldPath(error.path), error.message)
        }
        guard let error = error as? DecodingError else {
            let detail = "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
            return ConfigurationError(file: file, field: "", "not valid YAML: \(detail)")
        }
        if case .dataCorrupted(let context) = error, let underlying = context.underlyingError {
            return translate(underlying, file: file)
        }
        func kind(_ type: Any.Type) -> String {
            switch type {
            case is String.Type: return "a string"
            case is Int.Type: return "an integer"
            case is Double.Type, is Float.Type: return "a number"
            case is Bool.Type: return "true or false"
            default:
                let name = "\(type)"
                if name.hasPrefix("Array") || name.hasSuffix("Sequence") { return "a list" }
                if name.hasSuffix("Scalar") { return "a single value" }
                return "a mapping"
            }
        }
        switch error {
        case .keyNotFound(let key, let context):
            return ConfigurationError(file: file, field: fieldPath(context.codingPath + [key]), "missing")
        case .valueNotFound(let type, let context):
            return ConfigurationError(file: file, field: fieldPath(context.codingPath), "missing value, expected \(kind(type))")
        case .typeMismatch(let type, let context):
            return ConfigurationError(file: file, field: fieldPath(context.codingPath), "expected \(kind(type))")
        case .dataCorrupted(let context):
            let detail = context.debugDescription.isEmpty ? "invalid value" : context.debugDescription
            return ConfigurationError(file: file, field: fieldPath(context.codingPath),
                                      detail.replacingOccurrences(of: "\n", with: " "))
        @unknown default:
            return ConfigurationError(file: file, field: "", "\(error)")
        }
    }
}
