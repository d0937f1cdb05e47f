import Foundation

extension DaemonConfiguration {
    /// The optional `mqtt:` section: publish events to an MQTT broker (topics shaped like
    /// Frigate's) and, with `home_assistant: true`, announce the cameras to Home Assistant.
    ///
    ///     mqtt:
    ///       host: broker.lan                 # required
    ///       port: 1883                       # default 1883, 8883 with tls
    ///       protocol: "3.1.1"                # or 5
    ///       client_id: m2clipd-door          # default m2clipd-<hostname>
    ///       topic_prefix: m2clip             # default m2clip
    ///       username: m2clipd                # optional
    ///       password_file: /run/credentials/m2clipd.service/mqtt-password   # or password: …
    ///       tls: {ca_file: /etc/ssl/certs/ca.pem, cert_file: …, key_file: …} # cert/key optional
    ///       qos: 0                           # updates, status, stats (new/end are always 1)
    ///       keepalive_s: 30
    ///       buffer: 1000                     # messages held while the broker is unreachable
    ///       home_assistant: true             # device discovery
    ///       discovery_prefix: homeassistant
    public struct MQTT: Codable, Sendable, Equatable {
        public enum ProtocolVersion: String, Codable, Sendable {
            case v311 = "3.1.1"
            case v5 = "5"
        }

        public struct TLS: Codable, Sendable, Equatable {
            public var caFile: String
            public var certFile: String?
            public var keyFile: String?

            enum CodingKeys: String, CodingKey, CaseIterable {
                case caFile = "ca_file", certFile = "cert_file", keyFile = "key_file"
            }
        }

        public var host: String
        public var port: Int
        public var protocolVersion: ProtocolVersion
        public var clientID: String
        public var topicPrefix: String
        public var username: String?
        public var password: String?
        public var passwordFile: String?
        public var tls: TLS?
        public var qos: Int
        public var keepaliveSeconds: Int
        public var buffer: Int
        public var homeAssistant: Bool
        public var discoveryPrefix: String

        enum CodingKeys: String, CodingKey, CaseIterable {
            case host, port, username, password, tls, qos, buffer
            case protocolVersion = "protocol", clientID = "client_id", topicPrefix = "topic_prefix"
            case passwordFile = "password_file", keepaliveSeconds = "keepalive_s"
            case homeAssistant = "home_assistant", discoveryPrefix = "discovery_prefix"
        }

        public init(host: String, port: Int = 1883, protocolVersion: ProtocolVersion = .v311,
                    clientID: String = MQTT.defaultClientID, topicPrefix: String = "m2clip") {
            self.host = host
            self.port = port
            self.protocolVersion = protocolVersion
            self.clientID = clientID
            self.topicPrefix = topicPrefix
            qos = 0
            keepaliveSeconds = 30
            buffer = 1000
            homeAssistant = false
            discoveryPrefix = "homeassistant"
        }

        public static var defaultClientID: String {
            "m2clipd-" + (ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host")
        }

        /// The password as given, or read from `password_file` (trailing newline dropped),
        /// so systemd credentials (LoadCredential=) work. Valid after `load`.
        public func resolvedPassword() throws -> String? {
            if let password { return password }
            guard let passwordFile else { return nil }
            let text = try String(contentsOfFile: passwordFile, encoding: .utf8)
            return String(text.trimmingSuffix(while: { $0 == "\n" || $0 == "\r" }))
        }
    }
}

extension String {
    fileprivate func trimmingSuffix(while drop: (Character) -> Bool) -> Substring {
        var end = endIndex
        while end > startIndex, drop(self[index(before: end)]) { end = index(before: end) }
        return self[..<end]
    }
}

extension DaemonConfiguration.MQTT {
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        host = try c.decode(String.self, forKey: .host)
        tls = try c.decodeIfPresent(TLS.self, forKey: .tls)
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? (tls == nil ? 1883 : 8883)
        if let name = try c.decodeIfPresent(String.self, forKey: .protocolVersion) {
            guard let version = ProtocolVersion(rawValue: name) else {
                throw FieldError(path: c.codingPath + [CodingKeys.protocolVersion], message: "\"\(name)\" is not 3.1.1 or 5")
            }
            protocolVersion = version
        } else {
            protocolVersion = .v311
        }
        clientID = try c.decodeIfPresent(String.self, forKey: .clientID) ?? Self.defaultClientID
        topicPrefix = try c.decodeIfPresent(String.self, forKey: .topicPrefix) ?? "m2clip"
        username = try c.decodeIfPresent(String.self, forKey: .username)
        password = try c.decodeIfPresent(String.self, forKey: .password)
        passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
        qos = try c.decodeIfPresent(Int.self, forKey: .qos) ?? 0
        keepaliveSeconds = try c.decodeIfPresent(Int.self, forKey: .keepaliveSeconds) ?? 30
        buffer = try c.decodeIfPresent(Int.self, forKey: .buffer) ?? 1000
        homeAssistant = try c.decodeIfPresent(Bool.self, forKey: .homeAssistant) ?? false
        discoveryPrefix = try c.decodeIfPresent(String.self, forKey: .discoveryPrefix) ?? "homeassistant"
    }
}

extension DaemonConfiguration.MQTT.TLS {
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        caFile = try c.decode(String.self, forKey: .caFile)
        certFile = try c.decodeIfPresent(String.self, forKey: .certFile)
        keyFile = try c.decodeIfPresent(String.self, forKey: .keyFile)
    }
}

extension DaemonConfiguration.MQTT {
    /// Checks values and files (`resolve` anchors relative paths at the configuration file);
    /// `fail(field, message)` builds the error, field relative to `mqtt`.
    mutating func validate(cameras: [DaemonConfiguration.Camera], resolve: (String) -> String,
                           fail: (String, String) -> ConfigurationError) throws {
        let fm = FileManager.default
        guard !host.isEmpty else { throw fail("mqtt.host", "empty host") }
        guard (1...65535).contains(port) else { throw fail("mqtt.port", "must be in 1...65535 (got \(port))") }
        guard !clientID.isEmpty, clientID.utf8.count <= 65535 else { throw fail("mqtt.client_id", "empty client id") }
        for (field, prefix) in [("mqtt.topic_prefix", topicPrefix), ("mqtt.discovery_prefix", discoveryPrefix)] {
            guard !prefix.isEmpty, !prefix.hasPrefix("/"), !prefix.hasSuffix("/") else {
                throw fail(field, "\"\(prefix)\" must be non-empty and neither start nor end with /")
            }
            if prefix.contains(where: { $0 == "+" || $0 == "#" || $0.asciiValue.map { $0 < 0x20 } == true }) {
                throw fail(field, "\"\(prefix)\" may not contain the MQTT wildcards + or #")
            }
        }
        guard (0...2).contains(qos) else { throw fail("mqtt.qos", "must be 0, 1 or 2 (got \(qos))") }
        guard keepaliveSeconds >= 5 else { throw fail("mqtt.keepalive_s", "must be at least 5 (got \(keepaliveSeconds))") }
        guard buffer >= 1 else { throw fail("mqtt.buffer", "must be at least 1 (got \(buffer))") }
        if password != nil, passwordFile != nil { throw fail("mqtt.password_file", "give password or password_file, not both") }
        if (password != nil || passwordFile != nil), username == nil {
            throw fail("mqtt.username", "missing (a password needs a username)")
        }
        func readable(_ path: String, _ field: String) throws -> String {
            let resolved = resolve(path)
            guard fm.isReadableFile(atPath: resolved) else { throw fail(field, "no readable file at \(resolved)") }
            return resolved
        }
        if let file = passwordFile { passwordFile = try readable(file, "mqtt.password_file") }
        if var tls {
            tls.caFile = try readable(tls.caFile, "mqtt.tls.ca_file")
            if (tls.certFile == nil) != (tls.keyFile == nil) {
                throw fail(tls.certFile == nil ? "mqtt.tls.cert_file" : "mqtt.tls.key_file",
                           "missing (a client certificate needs both cert_file and key_file)")
            }
            if let cert = tls.certFile { tls.certFile = try readable(cert, "mqtt.tls.cert_file") }
            if let key = tls.keyFile { tls.keyFile = try readable(key, "mqtt.tls.key_file") }
            self.tls = tls
        }
        // Two cameras must not share a topic, and no camera may take a topic m2clipd uses itself.
        var topics: [String: Int] = [:]
        for (i, camera) in cameras.enumerated() {
            let segment = MQTTTopics.segment(camera.id)
            if MQTTTopics.reservedCameraSegments.contains(segment) {
                throw fail("cameras[\(i)].id", "\"\(camera.id)\" is an MQTT topic m2clipd uses (<prefix>/\(segment)); rename the camera")
            }
            if let first = topics[segment] {
                throw fail("cameras[\(i)].id", "\"\(camera.id)\" has the same MQTT topic segment \"\(segment)\" as cameras[\(first)]")
            }
            topics[segment] = i
        }
    }
}
