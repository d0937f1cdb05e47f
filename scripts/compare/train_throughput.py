#!/usr/bin/env python3
"""Training throughput of `m2clip train` at full size: clips/s, peak memory and how much of each
step the model waited for the loader, on real 320×240 H.264 clips.

Builds (once, cached in --work-dir) the full-size M²-CLIP-B/16 K400-layout model of
train_step_vs_torch.py, generates --clips H.264 clips (320×240, 25 fps, 4 s, ffmpeg's testsrc2
and mandelbrot sources, each with its own offset), labels them with --classes of the model's
labels, and runs one epoch of `m2clip train` (batch B × accumulate K, T = 8, 2 threads). Reports
the median clips/s over the steps after the first, the mean wait share and the peak RSS from
metrics.jsonl.

    python3 scripts/compare/train_throughput.py [--clips 24] [--batch 4] [--accumulate 2] [--workers 2]
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train_step_vs_torch as tsv  # noqa: E402


def make_clips(directory: Path, count: int, labels: list, classes: int, seed: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    chosen = labels[:classes]
    lines = []
    for i in range(count):
        path = directory / f"clip{i:03d}.mp4"
        if not path.exists():
            source = rng.choice(["testsrc2", "mandelbrot"])
            offset = rng.uniform(0, 20)
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                            f"{source}=size=320x240:rate=25", "-ss", f"{offset:.2f}", "-t", "4",
                            "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast", str(path)], check=True)
        lines.append(f"{path.name} {chosen[i % classes]}")
    listing = directory / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m2clip", type=Path, default=tsv.DEFAULT_M2CLIP)
    parser.add_argument("--work-dir", type=Path, default=tsv.DEFAULT_WORK_DIR)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `m2clip train` arguments")
    args = parser.parse_args()
    config = tsv.layout_config("k400")
    directory = tsv.ensure_layout(args.work_dir, "k400", config, 0, args.m2clip, print)
    labels = tsv.read_label_names(directory / "labels.txt")
    listing = make_clips(args.work_dir / "clips-320x240", args.clips, labels, args.classes, 0)
    out = args.work_dir / f"run-b{args.batch}x{args.accumulate}-w{args.workers}-{int(time.time())}"
    command = [str(args.m2clip), "train", "--model", str(directory / "model.m2c"), "--train", str(listing),
               "--out", str(out), "--epochs", "1", "--batch", str(args.batch), "--accumulate", str(args.accumulate),
               "--workers", str(args.workers), "--threads", str(args.threads), "--json"] + args.extra
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    epoch = [r for r in records if r["type"] == "epoch"][-1]
    rates = [s["clips_per_s"] for s in steps[1:]] or [steps[0]["clips_per_s"]]
    report = {
        "clips": args.clips, "batch": args.batch, "accumulate": args.accumulate, "workers": args.workers,
        "threads": args.threads, "steps": len(steps), "clips_per_s_median": statistics.median(rates),
        "step_clips_per_s": [round(s["clips_per_s"], 4) for s in steps],
        "wait_fraction_steps_after_first": statistics.mean(s["wait_fraction"] for s in steps[1:]) if len(steps) > 1 else None,
        "wait_fraction_epoch": epoch["wait_fraction"], "peak_rss_mb": epoch["peak_rss_mb"],
        "epoch_seconds": epoch["seconds"], "wall_seconds": wall,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
