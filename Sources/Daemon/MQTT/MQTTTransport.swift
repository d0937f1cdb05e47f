/// What `MQTTPublisher` needs from an MQTT client library, so its logic (buffering, state,
/// discovery, reconnection) can be tested with a scripted transport. `MosquittoClient` is the
/// real one. All calls come from the publisher's one network thread.
public protocol MQTTTransport: AnyObject {
    /// Opens the connection and sends CONNECT (the broker's answer comes through `poll`).
    /// Blocks for DNS and TCP; throws `MQTTTransportError` when the broker cannot be reached.
    func connect() throws
    /// Runs the network for up to `timeout` seconds and returns what happened. Throws when the
    /// connection is lost.
    func poll(timeout: Double) throws -> [MQTTTransportEvent]
    /// Queues `message`; returns its message id (delivery reported as `.delivered(id)`).
    func publish(_ message: MQTTMessage) throws -> Int32
    func subscribe(_ topic: String, qos: Int) throws
    /// Sends DISCONNECT (no last will) and closes the connection.
    func disconnect()
}

public enum MQTTTransportEvent: Sendable, Equatable {
    /// CONNACK accepted.
    case connected
    /// CONNACK refused (bad credentials, protocol version, …), with the broker's reason.
    case refused(String)
    /// A QoS 0 message was written, or a QoS 1/2 one acknowledged.
    case delivered(Int32)
    case message(topic: String, payload: [UInt8])
}

public struct MQTTTransportError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
