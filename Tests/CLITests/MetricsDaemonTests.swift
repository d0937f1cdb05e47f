import Foundation
import NetworkTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A Python with prometheus_client (Debian's python3-prometheus-client, which scripts/setup.sh
/// installs for /usr/bin/python3), nil when there is none.
let prometheusPython: String? = ["/usr/bin/python3", "/usr/local/bin/python3"].first { python in
    FileManager.default.isExecutableFile(atPath: python)
        && (try? runToEnd(python, ["-c", "import prometheus_client.parser"]))?.status == 0
}

/// m2clipd with `metrics:` on a free loopback port, scraped over plain HTTP and read with
/// prometheus_client's text-format parser, the one Prometheus' Python tooling uses.
@Suite(.serialized, .enabled(if: prometheusPython != nil, "no python3 with prometheus_client (scripts/setup.sh installs it)"))
struct MetricsDaemonTests {
    /// Scrapes `http://127.0.0.1:port/metrics` and prints every sample as one JSON line
    /// (family, type, sample name, labels, value); a parse error exits non-zero.
    static let scrape = """
        import json, sys, urllib.request
        from prometheus_client.parser import text_string_to_metric_families
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5) as r:
            assert r.status == 200, r.status
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                print(json.dumps({"family": family.name, "type": family.type, "name": s.name,
                                  "labels": s.labels, "value": s.value}))
        """

    /// What a scrape found.
    struct Sample: Decodable {
        let family: String
        let type: String
        let name: String
        let labels: [String: String]
        let value: Double
    }

    static func python(_ script: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try runToEnd(prometheusPython!, ["-c", script] + arguments)
    }

    static func scrape(port: UInt16) throws -> [Sample] {
        let (status, output) = try python(Self.scrape, ["\(port)"])
        try #require(status == 0, "scrape failed: \(output)")
        return try output.split(separator: "\n").map { try JSONDecoder().decode(Sample.self, from: Data($0.utf8)) }
    }

    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }

    @Test func metricsParseAndGrowAndBadRequestsDoNotHurt() throws {
        let port = closedPort()
        let dir = try MQTTDaemonTests.setUp(camera: "front", sections: "metrics: {listen: \"127.0.0.1:\(port)\"}")
        defer { try? FileManager.default.removeItem(at: dir) }
        let daemon = try MQTTDaemonTests.Daemon(dir)
        try #require(daemon.wait(20, for: "ready:"), "\(daemon.text)")
        #expect(daemon.text.contains("metrics on http://127.0.0.1:\(port)/metrics"), "\(daemon.text)")
        // Windows need T sampled frames first.
        var first = try Self.scrape(port: port)
        let deadline = Date().addingTimeInterval(20)
        while (Self.value(first, "m2clipd_processed_windows_total") ?? 0) == 0, Date() < deadline {
            usleep(500_000)
            first = try Self.scrape(port: port)
        }
        var types: [String: String] = [:]
        for sample in first { types[sample.family] = sample.type }
        // prometheus_client names a counter's family without `_total`.
        let expected = [
            "m2clipd_build_info": "gauge", "m2clipd_camera_up": "gauge",
            "m2clipd_frames": "counter", "m2clipd_sampled_frames": "counter", "m2clipd_dropped_frames": "counter",
            "m2clipd_windows": "counter", "m2clipd_processed_windows": "counter", "m2clipd_skipped_windows": "counter",
            "m2clipd_inference_duration_seconds": "histogram", "m2clipd_event_latency_seconds": "histogram",
            "m2clipd_subscribers": "gauge",
        ]
        for (family, type) in expected { #expect(types[family] == type, "\(family): \(types[family] ?? "missing")") }
        #expect(first.allSatisfy { $0.name.hasPrefix("m2clipd_") })
        #expect(Self.value(first, "m2clipd_build_info", ["version": "0.1.0"]) == 1)
        #expect(Self.value(first, "m2clipd_camera_up", ["camera": "front"]) == 1)
        #expect(Self.value(first, "m2clipd_subscribers") == 0)
        #expect(Self.value(first, "m2clipd_inference_duration_seconds_bucket", ["camera": "front", "le": "+Inf"]) != nil)
        #expect(first.contains { $0.name == "m2clipd_inference_duration_seconds_bucket" && $0.labels["le"] == "0.05" })
        let frames = try #require(Self.value(first, "m2clipd_frames_total", ["camera": "front"]))
        #expect(frames > 0)

        // A wrong path, a wrong method and bytes that are not HTTP: answered or dropped, the
        // daemon serves on.
        let (status, output) = try Self.python("""
            import socket, sys, urllib.error, urllib.request
            port = int(sys.argv[1])
            for path, method in [("/", "GET"), ("/metrics/x", "GET"), ("/metrics", "POST")]:
                try:
                    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None), timeout=5)
                    print(path, method, 200)
                except urllib.error.HTTPError as e:
                    print(path, method, e.code)
            for garbage in [b"\\x00\\xff\\x16\\x03\\x01 not http\\r\\n\\r\\n", b"GET /metrics HTTP/9.9\\r\\n" + b"X" * 100000 + b"\\r\\n\\r\\n", b"GET"]:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                try:
                    s.sendall(garbage)
                    s.shutdown(socket.SHUT_WR)
                    s.recv(4096)
                except OSError:
                    pass
                s.close()
            """, ["\(port)"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("/ GET 404") && output.contains("/metrics/x GET 404"), "\(output)")
        #expect(output.contains("/metrics POST 405"), "\(output)")

        sleep(2)
        let second = try Self.scrape(port: port)
        let later = try #require(Self.value(second, "m2clipd_frames_total", ["camera": "front"]))
        #expect(later > frames, "frames_total \(frames) then \(later)")
        let inferences = try #require(Self.value(second, "m2clipd_inference_duration_seconds_count", ["camera": "front"]))
        let processed = Self.value(second, "m2clipd_processed_windows_total", ["camera": "front"]) ?? 0
        #expect(inferences > 0 && abs(inferences - processed) <= 1, "one duration per processed window: \(inferences), \(processed)")
        #expect(daemon.stop() == 0, "\(daemon.text)")
        #expect(!acceptsConnections(port: port), "the port closes with the daemon")
    }

    /// MQTT and metrics together: the publisher's gauges and counters are scraped too.
    @Test(.enabled(if: mosquittoBinary != nil, "mosquitto is not installed"))
    func mqttCountersAreScraped() throws {
        let port = closedPort()
        let dir = try MQTTDaemonTests.setUp(camera: "front", sections: """
            mqtt: {host: 127.0.0.1, port: PORT}
            metrics: {listen: "127.0.0.1:\(port)"}
            """)
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try MQTTDaemonTests.Broker(directory: dir)
        try MQTTDaemonTests.point(dir, at: broker)
        let daemon = try MQTTDaemonTests.Daemon(dir)
        try #require(daemon.wait(20, for: "mqtt: connected"), "\(daemon.text)")
        sleep(2)
        let samples = try Self.scrape(port: port)
        #expect(Self.value(samples, "m2clipd_mqtt_connected") == 1)
        #expect(Self.value(samples, "m2clipd_mqtt_queued_messages") != nil)
        #expect((Self.value(samples, "m2clipd_mqtt_sent_messages_total") ?? 0) > 0)
        #expect(Self.value(samples, "m2clipd_mqtt_dropped_messages_total") == 0)
        #expect(Self.value(samples, "m2clipd_mqtt_connect_failures_total") == 0)
        #expect(daemon.stop() == 0, "\(daemon.text)")
    }

    @Test func portInUseStopsTheDaemonNamingTheField() throws {
        let taken = SilentListener()
        let dir = try MQTTDaemonTests.setUp(camera: "front", sections: "metrics: {listen: \"127.0.0.1:\(taken.port)\"}")
        defer { try? FileManager.default.removeItem(at: dir) }
        let daemon = try MQTTDaemonTests.Daemon(dir)
        let status = daemon.stop()
        #expect(status != 0)
        #expect(daemon.text.contains("metrics.listen: cannot listen on 127.0.0.1:\(taken.port)"), "\(daemon.text)")
        #expect(!daemon.text.contains("ready:"))
    }
}
