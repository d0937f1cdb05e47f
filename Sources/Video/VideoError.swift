/// Why a video could not be opened or a frame not delivered: one line naming the file (or the
/// stream URL, without credentials) and, where it matters, the frame, e.g.
/// `video clips/a.mp4: frame 41 is not decodable (Invalid data found when processing input)`,
/// `video rtsp://cam1/main: timed out (connecting: no answer within 10 s)`.
public struct VideoError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// Nothing at the path, or a directory (`detail` says so).
        case noSuchFile
        /// The file exists but cannot be read (permissions).
        case unreadable
        /// No demuxer recognises the bytes: not a media file at all.
        case notMediaFile
        /// A media file without a video stream (audio only, or only cover art).
        case noVideoStream
        /// The video codec has no decoder in this FFmpeg build.
        case unsupportedCodec(String)
        /// A recognised container or stream that is cut short or damaged beyond use.
        case corrupt
        /// The frame with this display index could not be decoded.
        case frameNotDecodable(Int)
        /// A negative frame index, or another request no file can satisfy.
        case invalidRequest
        /// A stream address that is not a URL libavformat can open (`detail` says why).
        case invalidURL
        /// The stream's server could not be reached or refused it (connection refused, no
        /// route, HTTP 404, RTSP 401, ...).
        case connectionFailed
        /// An open stream failed while reading (connection reset, I/O error).
        case connectionLost
        /// Opening, probing or reading took longer than its deadline.
        case timedOut
        /// Aborted from another thread (`StreamCancellation.cancel()`).
        case cancelled
    }

    /// The file path, or the stream URL without credentials (`StreamURL.redacted`).
    public let path: String
    public let kind: Kind
    /// FFmpeg's message or another specific, for the end of the line; may be empty.
    public let detail: String

    public init(path: String, kind: Kind, detail: String = "") {
        self.path = path
        self.kind = kind
        self.detail = detail
    }

    public var description: String {
        let what: String
        switch kind {
        case .noSuchFile: what = "no such file"
        case .unreadable: what = "cannot read the file"
        case .notMediaFile: what = "not a video: no media format recognised"
        case .noVideoStream: what = "not a video: no video stream"
        case .unsupportedCodec(let codec): what = "unsupported video codec \(codec)"
        case .corrupt: what = "truncated or corrupt file"
        case .frameNotDecodable(let index): what = "frame \(index) is not decodable"
        case .invalidRequest: what = "invalid request"
        case .invalidURL: what = "not a stream URL"
        case .connectionFailed: what = "cannot connect"
        case .connectionLost: what = "connection lost"
        case .timedOut: what = "timed out"
        case .cancelled: what = "cancelled"
        }
        let line = detail.isEmpty ? "video \(path): \(what)" : "video \(path): \(what) (\(detail))"
        return line.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
