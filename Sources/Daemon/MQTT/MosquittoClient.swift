import CMosquitto
import Foundation

/// `MQTTTransport` on Eclipse Mosquitto's libmosquitto, driven by the caller's thread
/// (`mosquitto_loop`, no library thread): MQTT 3.1.1 or 5, TLS, username/password and a
/// retained last will.
public final class MosquittoClient: MQTTTransport {
    private static let libraryReady: Bool = { mosquitto_lib_init() == MOSQ_ERR_SUCCESS.rawValue }()

    private let handle: OpaquePointer
    private let host: String
    private let port: Int32
    private let keepalive: Int32
    /// Filled by libmosquitto's callbacks during `poll`, on the same thread.
    fileprivate var events: [MQTTTransportEvent] = []
    private var connectedOnce = false

    /// - Parameter will: published by the broker when this client vanishes without DISCONNECT.
    public init(configuration c: DaemonConfiguration.MQTT, will: MQTTMessage) throws {
        guard Self.libraryReady, let handle = mosquitto_new(c.clientID, true, nil) else {
            throw MQTTTransportError("libmosquitto: cannot create a client (\(String(cString: strerror(errno))))")
        }
        self.handle = handle
        host = c.host
        port = Int32(c.port)
        keepalive = Int32(c.keepaliveSeconds)
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        func check(_ rc: Int32, _ what: String) throws {
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw MQTTTransportError("libmosquitto: \(what): \(String(cString: mosquitto_strerror(rc)))")
            }
        }
        let version = c.protocolVersion == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311
        try check(mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, version), "protocol")
        if let username = c.username {
            try check(mosquitto_username_pw_set(handle, username, try c.resolvedPassword()), "username")
        }
        if let tls = c.tls {
            try check(mosquitto_tls_set(handle, tls.caFile, nil, tls.certFile, tls.keyFile, nil), "tls")
        }
        try will.payload.withUnsafeBytes { bytes in
            try check(mosquitto_will_set(handle, will.topic, Int32(bytes.count), bytes.baseAddress,
                                         Int32(will.qos), will.retain), "last will")
        }
        mosquitto_connect_callback_set(handle) { _, user, rc in
            let client = MosquittoClient.from(user)
            client?.events.append(rc == 0 ? .connected : .refused(String(cString: mosquitto_connack_string(rc))))
        }
        mosquitto_publish_callback_set(handle) { _, user, mid in
            MosquittoClient.from(user)?.events.append(.delivered(mid))
        }
        mosquitto_message_callback_set(handle) { _, user, message in
            guard let message, let client = MosquittoClient.from(user) else { return }
            let m = message.pointee
            let payload = m.payload.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: Int(m.payloadlen))) } ?? []
            client.events.append(.message(topic: String(cString: m.topic), payload: payload))
        }
    }

    deinit { mosquitto_destroy(handle) }

    fileprivate static func from(_ user: UnsafeMutableRawPointer?) -> MosquittoClient? {
        user.map { Unmanaged<MosquittoClient>.fromOpaque($0).takeUnretainedValue() }
    }

    private func failure(_ rc: Int32) -> MQTTTransportError {
        if rc == MOSQ_ERR_ERRNO.rawValue { return MQTTTransportError(String(cString: strerror(errno))) }
        return MQTTTransportError(String(cString: mosquitto_strerror(rc)))
    }

    public func connect() throws {
        // mosquitto_connect the first time, mosquitto_reconnect after (same settings, fresh socket).
        let rc = connectedOnce ? mosquitto_reconnect(handle) : mosquitto_connect(handle, host, port, keepalive)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw failure(rc) }
        connectedOnce = true
    }

    public func poll(timeout: Double) throws -> [MQTTTransportEvent] {
        let rc = mosquitto_loop(handle, Int32(max(timeout, 0) * 1000), 1)
        let happened = events
        events.removeAll()
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            if happened.isEmpty { throw failure(rc) }
            // Report what arrived first (a refusal explains the lost connection); the loss
            // surfaces on the next poll.
            return happened
        }
        return happened
    }

    public func publish(_ message: MQTTMessage) throws -> Int32 {
        var mid: Int32 = 0
        let rc = message.payload.withUnsafeBytes { bytes in
            mosquitto_publish(handle, &mid, message.topic, Int32(bytes.count), bytes.baseAddress,
                              Int32(message.qos), message.retain)
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw failure(rc) }
        return mid
    }

    public func subscribe(_ topic: String, qos: Int) throws {
        let rc = mosquitto_subscribe(handle, nil, topic, Int32(qos))
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw failure(rc) }
    }

    public func disconnect() {
        mosquitto_disconnect(handle)
        // Lets the DISCONNECT packet out.
        _ = mosquitto_loop(handle, 0, 1)
    }
}
