#!/usr/bin/env python3
"""Frame-to-event latency of m2clipd: for every action line, the time from the capture of the
window's last frame (`window_end`, wall clock) to the line's publication (`ts`), next to the
model time of that window (`latency_ms`). The issue's goal: latency <= model time + 20 ms.

Runs the release m2clipd on a looped video with a model file, subscribes on its socket for
--seconds, prints medians / p90 and the overhead (latency - model time), `--json` for machines.

    swift build -c release --product m2clipd
    python3 scripts/compare/daemon_latency.py --model out/untrained-b16-int8.m2c [--seconds 30]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an .m2c model file")
    parser.add_argument("--video", default=os.path.join(REPO, "Tests/Fixtures/video/phone_h264_rot90.mp4"))
    parser.add_argument("--m2clipd", default=os.path.join(REPO, ".build/release/m2clipd"))
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--sample-fps", type=float, default=8)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not os.access(args.m2clipd, os.X_OK):
        sys.exit(f"m2clipd not found at {args.m2clipd}: swift build -c release --product m2clipd")

    work = tempfile.mkdtemp(prefix="m2clipd-latency-")
    sock = os.path.join(work, "events.sock")
    config = os.path.join(work, "m2clipd.yaml")
    with open(config, "w") as f:
        f.write(f"""model: {os.path.abspath(args.model)}
socket: {{path: {sock}}}
stats_interval_s: 5
cameras:
  - id: bench
    source: {{file: {os.path.abspath(args.video)}, loop: true}}
    sample_fps: {args.sample_fps}
    stride: {args.stride}
    head: zero-shot
    labels: [a, b, c, d, e]
    thresholds: {{start: 0.01, end: 0.005}}
""")
    daemon = subprocess.Popen([args.m2clipd, "--config", config], stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            if os.path.exists(sock) or daemon.poll() is not None:
                break
            time.sleep(0.1)
        if not os.path.exists(sock):
            sys.exit("m2clipd did not start: " + daemon.stderr.read().decode(errors="replace"))
        client = socket.socket(socket.AF_UNIX)
        client.connect(sock)
        client.sendall(b'{"op":"subscribe"}\n')
        client.settimeout(1.0)
        buffer, latency, model, end = b"", [], [], time.time() + args.seconds
        while time.time() < end:
            try:
                chunk = client.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                if event.get("type", "").startswith("action.") and event["type"] != "action.end":
                    latency.append((event["ts"] - event["window_end"]) * 1e3)
                    model.append(event["latency_ms"])
        client.close()
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    overhead = [l - m for l, m in zip(latency, model)]
    result = {
        "events": len(latency),
        "frame_to_event_ms_median": statistics.median(latency) if latency else None,
        "frame_to_event_ms_p90": percentile(latency, 0.9),
        "model_ms_median": statistics.median(model) if model else None,
        "overhead_ms_median": statistics.median(overhead) if overhead else None,
        "overhead_ms_p90": percentile(overhead, 0.9),
    }
    if args.json:
        print(json.dumps(result))
        return
    if not latency:
        sys.exit("no action events arrived")
    print(f"{len(latency)} action lines; frame-to-event median {result['frame_to_event_ms_median']:.1f} ms "
          f"(p90 {result['frame_to_event_ms_p90']:.1f}); model median {result['model_ms_median']:.1f} ms; "
          f"overhead median {result['overhead_ms_median']:.1f} ms (p90 {result['overhead_ms_p90']:.1f}); goal <= 20 ms")


if __name__ == "__main__":
    main()
