import Foundation

/// Where a subscriber left off: the run (`epoch`) and the last `seq` it received.
public struct ResumePoint: Codable, Sendable, Equatable {
    public var epoch: String
    public var seq: UInt64
    public init(epoch: String, seq: UInt64) { self.epoch = epoch; self.seq = seq }
}

/// What a subscriber wants. Empty `cameras` / `labels` mean all; `minScore` nil means any.
/// Cameras filter action.* and camera.status; labels and min_score filter action.* only.
public struct EventFilter: Sendable, Equatable {
    public var cameras: Set<String>
    public var labels: Set<String>
    public var minScore: Float?
    public init(cameras: Set<String> = [], labels: Set<String> = [], minScore: Float? = nil) {
        self.cameras = cameras; self.labels = labels; self.minScore = minScore
    }
}

/// The one line a subscriber may send after `hello`:
/// `{"op":"subscribe","cameras":[..],"labels":[..],"min_score":x,"since":{"epoch":..,"seq":N}}`.
public struct SubscribeRequest: Codable, Sendable, Equatable {
    public var op: String
    public var cameras: [String]?
    public var labels: [String]?
    public var minScore: Float?
    public var since: ResumePoint?

    enum CodingKeys: String, CodingKey { case op, cameras, labels, minScore = "min_score", since }

    public init(cameras: [String]? = nil, labels: [String]? = nil, minScore: Float? = nil, since: ResumePoint? = nil) {
        self.op = "subscribe"; self.cameras = cameras; self.labels = labels; self.minScore = minScore; self.since = since
    }

    public var filter: EventFilter {
        EventFilter(cameras: Set(cameras ?? []), labels: Set(labels ?? []), minScore: minScore)
    }

    /// The request as one NDJSON line, newline included.
    public func line() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and finite numbers cannot fail.
        let data = (try? encoder.encode(self)) ?? Data("{\"op\":\"subscribe\"}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// Parses one subscriber line (without its newline); the error message says what is wrong.
    public static func parse(_ bytes: [UInt8]) -> Result<SubscribeRequest, SubscribeLineError> {
        let request: SubscribeRequest
        do {
            request = try JSONDecoder().decode(SubscribeRequest.self, from: Data(bytes))
        } catch DecodingError.keyNotFound(let key, _) {
            return .failure(SubscribeLineError(message: "subscribe line: missing key \"\(key.stringValue)\""))
        } catch DecodingError.typeMismatch(_, let context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return .failure(SubscribeLineError(message: "subscribe line: \"\(path)\" has the wrong type"))
        } catch {
            return .failure(SubscribeLineError(message: "subscribe line is not a JSON object"))
        }
        guard request.op == "subscribe" else {
            return .failure(SubscribeLineError(message: "subscribe line: unknown op \"\(request.op)\", expected \"subscribe\""))
        }
        if let minScore = request.minScore, !minScore.isFinite {
            return .failure(SubscribeLineError(message: "subscribe line: min_score must be a finite number"))
        }
        return .success(request)
    }
}

public struct SubscribeLineError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// A published event as the ring and the queues hold it: the encoded line and what filters need.
struct EventEntry: Sendable {
    var seq: UInt64
    var line: String
    var type: String
    var camera: String?
    var label: String?
    var score: Float?
    var actionID: String?
    /// The line's `ts`.
    var time: Double = 0
    var isUpdate: Bool { type == "action.update" }
}

/// Encodes lines: `{"v":1,"seq":N,"epoch":"…","type":"…","ts":T, <payload fields>}`.
struct LineEncoder {
    static let version = 1
    private let epochJSON: String
    private let encoder: JSONEncoder

    init(epoch: String) {
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        epochJSON = LineEncoder.jsonString(epoch)
    }

    static func jsonString(_ s: String) -> String {
        let data = (try? JSONEncoder().encode(s)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The payload's fields as JSON object text without the braces ("" when none).
    func payloadFields(_ event: DaemonEvent) throws -> String {
        let data: Data
        switch event {
        case .hello(let h): data = try encoder.encode(h)
        case .actionStart(let a), .actionUpdate(let a), .actionEnd(let a): data = try encoder.encode(a)
        case .cameraStatus(let s): data = try encoder.encode(s)
        case .stats(let s): data = try encoder.encode(s)
        }
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    /// One line with a newline. `seq` nil: a session line (hello, dropped, resync, error).
    func line(type: String, seq: UInt64?, fields: String, time: Double = Date().timeIntervalSince1970) -> String {
        var s = "{\"v\":\(LineEncoder.version),"
        if let seq { s += "\"seq\":\(seq)," }
        s += "\"epoch\":\(epochJSON),\"type\":\"\(type)\",\"ts\":\(time)"
        if !fields.isEmpty { s += "," + fields }
        return s + "}\n"
    }
}
