import CFFmpeg

/// A stream address as libavformat takes it (`rtsp://user:pass@cam/main`,
/// `http://host:8080/live.ts`, `udp://@:1234`), checked without touching the network: a
/// `scheme://` prefix naming a protocol this FFmpeg build has (or a demuxer that connects by
/// itself, such as RTSP), no spaces or control characters, and a host and valid port where the
/// scheme needs one.
///
/// `redacted` is the form to show: messages, logs and `VideoError.path` use it, never `string`.
public struct StreamURL: Sendable, Hashable, CustomStringConvertible {
    /// The address as given, credentials included: only for libavformat.
    public let string: String
    /// The scheme, lowercased: "rtsp", "http", ...
    public let scheme: String
    /// The host as written (no brackets for IPv6); empty for schemes without one.
    public let host: String
    /// The address without `user:password@` and with password-like query values hidden.
    public let redacted: String

    public var description: String { redacted }

    /// Schemes whose URLs are meaningless without a host to connect to.
    static let schemesWithHost: Set<String> = [
        "http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "rtmpts", "rtmpe", "rtmpte",
    ]
    /// Query parameters that cameras take credentials in (`?user=admin&password=...`).
    static let secretParameters: Set<String> = ["password", "passwd", "pwd", "pass", "secret", "token"]

    public init(_ string: String) throws {
        let shown = StreamURL.redacting(string)
        func invalid(_ why: String) -> VideoError { VideoError(path: shown, kind: .invalidURL, detail: why) }

        if string.isEmpty { throw invalid("empty") }
        if string.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            throw invalid("contains spaces or control characters (percent-encode them)")
        }
        guard let separator = string.firstRange(of: "://") else {
            throw invalid("no scheme; expected scheme://host/..., e.g. rtsp://camera/stream")
        }
        let scheme = string[..<separator.lowerBound]
        let isScheme = scheme.first?.isLetter == true
            && scheme.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }
        guard isScheme else { throw invalid("\"\(scheme)\" is not a URL scheme") }
        let lowered = scheme.lowercased()
        let rest = string[separator.upperBound...]
        if rest.isEmpty { throw invalid("nothing after \(lowered)://") }

        let authority = rest.prefix { !"/?#".contains($0) }
        let hostAndPort = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
        let host: Substring, port: Substring?
        if hostAndPort.hasPrefix("[") {
            guard let close = hostAndPort.firstIndex(of: "]") else { throw invalid("unclosed [ in the IPv6 host") }
            host = hostAndPort[hostAndPort.index(after: hostAndPort.startIndex)..<close]
            let after = hostAndPort[hostAndPort.index(after: close)...]
            guard after.isEmpty || after.hasPrefix(":") else { throw invalid("\"\(after)\" after the IPv6 host") }
            port = after.isEmpty ? nil : after.dropFirst()
        } else if let colon = hostAndPort.lastIndex(of: ":") {
            host = hostAndPort[..<colon]
            port = hostAndPort[hostAndPort.index(after: colon)...]
        } else {
            host = hostAndPort
            port = nil
        }
        if let port, !port.isEmpty || StreamURL.schemesWithHost.contains(lowered) {
            guard port.allSatisfy(\.isASCII), let number = Int(port), (1...65535).contains(number) else {
                throw invalid("port \"\(port)\" is not a number from 1 to 65535")
            }
        }
        if host.isEmpty && StreamURL.schemesWithHost.contains(lowered) { throw invalid("no host") }
        guard StreamURL.libavformatOpens(string, scheme: lowered) else {
            throw invalid("this FFmpeg build has no \"\(lowered)\" protocol")
        }
        self.string = string
        self.scheme = lowered
        self.host = String(host)
        redacted = shown
    }

    /// `url` with the user information of its authority (`user:pass@`) removed and the values of
    /// password-like query parameters replaced by `***`. Works on any text, URL or not, so that
    /// an address that fails to parse can still be shown.
    public static func redacting(_ url: String) -> String {
        var text = url
        let authorityStart = text.firstRange(of: "://")?.upperBound ?? text.startIndex
        let authorityEnd = text[authorityStart...].firstIndex(where: { "/?#".contains($0) }) ?? text.endIndex
        // The last @: an unescaped @ in a password must not leave its tail behind.
        if let at = text[authorityStart..<authorityEnd].lastIndex(of: "@") {
            text.removeSubrange(authorityStart...at)
        }
        guard let question = text.firstIndex(of: "?") else { return text }
        let queryStart = text.index(after: question)
        let queryEnd = text[queryStart...].firstIndex(of: "#") ?? text.endIndex
        let parameters = text[queryStart..<queryEnd].split(separator: "&", omittingEmptySubsequences: false)
        let shown = parameters.map { parameter -> String in
            guard let equals = parameter.firstIndex(of: "="),
                  secretParameters.contains(parameter[..<equals].lowercased()) else { return String(parameter) }
            return parameter[...equals] + "***"
        }
        text.replaceSubrange(queryStart..<queryEnd, with: shown.joined(separator: "&"))
        return text
    }

    /// An input protocol of this name (avio_enum_protocols), or a demuxer that opens the URL
    /// itself (AVFMT_NOFILE, matched by name: RTSP, SAP), as avformat_open_input would find it.
    static func libavformatOpens(_ url: String, scheme: String) -> Bool {
        var opaque: UnsafeMutableRawPointer? = nil
        while let name = avio_enum_protocols(&opaque, 0) {
            if String(cString: name) == scheme { return true }
        }
        var padding = [UInt8](repeating: 0, count: Int(AVPROBE_PADDING_SIZE))
        return url.withCString { name in
            padding.withUnsafeMutableBufferPointer { buffer in
                var probe = AVProbeData()
                probe.filename = name
                probe.buf = buffer.baseAddress
                probe.buf_size = 0
                return av_probe_input_format(&probe, 0) != nil
            }
        }
    }
}
