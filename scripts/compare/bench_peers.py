#!/usr/bin/env python3
"""Time the 8-frame CLIP ViT-B/16 image tower in m2clip, ONNX Runtime and PyTorch, interleaved.

One clip is pixel_values (8, 3, 224, 224) fp32 -> image_embeds (8, 512) (vision tower + projection)
on the seeded random checkpoint that parity_full.py uses (built into the work dir if missing).
Engines, all fp32 on the CPU with T threads:

  m2clip       `m2clip bench --model DIR --frames 8 --threads T --iterations K --json` (K = 1 by
               default); a round's figure is its `clip_ms_median`, timed inside the process after
               its own warm-up clip, so process start and weight loading do not count
  onnxruntime  the tower exported with torch.onnx.export (opset 17, dynamic batch; cached in the
               work dir as vision-opset17.onnx), CPUExecutionProvider, intra_op_num_threads=T,
               inter_op_num_threads=1, sequential, ORT_ENABLE_ALL graph optimisations
  pytorch      transformers CLIPModel (default SDPA attention), torch.set_num_threads(T),
               torch.inference_mode

The engines take turns: every round runs each engine once (order rotated each round, a short
pause between engines so spinning worker threads settle); the first `--warmup` rounds are dropped
and the table shows the median (and p90) over the `--iterations` measured rounds, in ms per clip,
with the ratios m2clip/ORT and m2clip/PyTorch (< 1: m2clip is faster). If m2clip is not built the
ORT and PyTorch figures are still measured and m2clip is reported missing. `--json` prints one JSON
document instead of the table; progress goes to stderr.

Run from anywhere (first run also builds the checkpoint, ~15 s, and the ONNX export, ~15 s):

    python3 scripts/compare/bench_peers.py [--m2clip .build/release/m2clip] [--threads 2]
        [--iterations 5] [--warmup 1] [--m2clip-iterations 1] [--work-dir /tmp/m2clip-vitb16] [--json]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import common

FRAMES = 8
ONNX_NAME = "vision-opset17.onnx"
ONNX_OPSET = 17
PAUSE_S = 0.2


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


class ImageTower(torch.nn.Module):
    """pixel_values (N, 3, 224, 224) -> image_embeds (N, 512): what `get_image_features` computes."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = model.visual_projection

    def forward(self, pixel_values):
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)


def export_onnx(work_dir: Path) -> Path:
    """The cached ONNX export of the image tower; exported on first use."""
    path = work_dir / ONNX_NAME
    if path.exists():
        return path
    log(f"exporting the image tower to {path} (opset {ONNX_OPSET}) ...")
    # Eager attention exports as plain MatMul/Softmax, which every opset-17 runtime runs.
    tower = ImageTower(common.load_checkpoint(work_dir, attn_implementation="eager")).eval()
    example = (torch.zeros(2, 3, 224, 224),)
    partial = work_dir / (ONNX_NAME + ".partial")
    try:
        torch.onnx.export(tower, example, str(partial), opset_version=ONNX_OPSET, dynamo=True,
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_shapes={"pixel_values": {0: torch.export.Dim("frames", min=1, max=256)}},
                          external_data=False, verbose=False)
    except Exception as e:  # the TorchScript exporter still handles what dynamo cannot
        log(f"dynamo export failed ({type(e).__name__}: {e}); using the TorchScript exporter")
        torch.onnx.export(tower, example, str(partial), opset_version=ONNX_OPSET, dynamo=False,
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "frames"}, "image_embeds": {0: "frames"}})
    partial.rename(path)
    return path


class OnnxRuntimeEngine:
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int, pixel_values: torch.Tensor):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = {"pixel_values": pixel_values.numpy()}
        self.version = ort.__version__

    def run(self) -> np.ndarray:
        return self.session.run(None, self.inputs)[0]

    def time_ms(self) -> float:
        start = time.perf_counter()
        self.run()
        return (time.perf_counter() - start) * 1e3


class PyTorchEngine:
    name = "pytorch"

    def __init__(self, work_dir: Path, threads: int, pixel_values: torch.Tensor):
        torch.set_num_threads(threads)
        self.tower = ImageTower(common.load_checkpoint(work_dir, attn_implementation="sdpa")).eval()
        self.pixel_values = pixel_values
        self.version = torch.__version__

    def run(self) -> np.ndarray:
        with torch.inference_mode():
            return self.tower(self.pixel_values).numpy()

    def time_ms(self) -> float:
        start = time.perf_counter()
        self.run()
        return (time.perf_counter() - start) * 1e3


class M2ClipEngine:
    name = "m2clip"

    def __init__(self, binary: Path, work_dir: Path, threads: int, iterations: int):
        self.arguments = ["bench", "--model", str(work_dir), "--frames", str(FRAMES),
                          "--threads", str(threads), "--iterations", str(iterations)]
        self.binary = binary
        self.last = None
        self.version = None

    def time_ms(self) -> float:
        self.last = common.run_m2clip(self.binary, self.arguments)
        if "clip_ms_median" not in self.last:
            raise common.M2ClipError(f"m2clip bench JSON has no clip_ms_median: {sorted(self.last)}")
        return float(self.last["clip_ms_median"])


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q, method="linear"))


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Interleaved timing of the 8-frame CLIP ViT-B/16 image tower: m2clip, ORT, PyTorch.")
    parser.add_argument("--m2clip", default=str(common.DEFAULT_M2CLIP), help="m2clip binary")
    parser.add_argument("--work-dir", type=Path, default=common.DEFAULT_WORK_DIR,
                        help="checkpoint directory shared with parity_full.py")
    parser.add_argument("--seed", type=int, default=common.DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and dropped")
    parser.add_argument("--m2clip-iterations", type=int, default=1,
                        help="--iterations passed to `m2clip bench` in each round (it warms up itself)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    if args.iterations < 1 or args.warmup < 0 or args.threads < 1 or args.m2clip_iterations < 1:
        parser.error("--iterations, --threads and --m2clip-iterations must be >= 1, --warmup >= 0")

    work_dir = common.ensure_checkpoint(args.work_dir, args.seed, log=log)
    pixel_values = common.make_pixel_values(FRAMES, 224, args.seed)
    onnx_path = export_onnx(work_dir)

    engines = []
    binary = common.find_m2clip(args.m2clip)
    m2clip_status = "ok"
    if binary is None:
        m2clip_status = "missing: " + common.missing_m2clip_message(args.m2clip)
        log(m2clip_status)
    else:
        engines.append(M2ClipEngine(binary, work_dir, args.threads, args.m2clip_iterations))
    ort_engine = OnnxRuntimeEngine(onnx_path, args.threads, pixel_values)
    torch_engine = PyTorchEngine(work_dir, args.threads, pixel_values)
    engines += [ort_engine, torch_engine]

    # The export must compute what PyTorch computes, or the ORT figure means nothing.
    difference = float(np.abs(ort_engine.run() - torch_engine.run()).max())
    log(f"ORT vs PyTorch image_embeds max abs diff: {difference:.2e}")
    if difference > 1e-3:
        log("error: the ONNX export disagrees with PyTorch; delete it to re-export: " + str(onnx_path))
        return 1

    load_before = os.getloadavg()[0]  # a shared machine's other work shows here
    samples = {e.name: [] for e in engines}
    rounds = args.warmup + args.iterations
    for r in range(rounds):
        order = engines[r % len(engines):] + engines[:r % len(engines)]
        figures = []
        for engine in list(order):
            try:
                ms = engine.time_ms()
            except common.M2ClipError as e:
                log(f"m2clip failed, continuing without it: {e}")
                m2clip_status = f"failed: {e}"
                engines.remove(engine)
                samples.pop(engine.name, None)
                continue
            if r >= args.warmup:
                samples[engine.name].append(ms)
            figures.append(f"{engine.name} {ms:.0f} ms")
            time.sleep(PAUSE_S)
        label = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}/{args.iterations}"
        log(f"{label}: " + ", ".join(figures))

    results = {}
    for name, values in samples.items():
        results[name] = {
            "ms_median": statistics.median(values),
            "ms_p90": percentile(values, 90),
            "ms_min": min(values),
            "ms_all": values,
        }
    results["onnxruntime"]["version"] = ort_engine.version
    results["pytorch"]["version"] = torch_engine.version
    m2clip_bench = None
    if "m2clip" in results:
        m2clip_bench = engines[0].last
        for key in ("threads", "kernels", "stages", "clip_ms_p90"):
            if key in m2clip_bench:
                results["m2clip"][f"bench_{key}"] = m2clip_bench[key]
    ratios = {}
    if "m2clip" in results:
        for peer in ("onnxruntime", "pytorch"):
            ratios[f"m2clip/{peer}"] = results["m2clip"]["ms_median"] / results[peer]["ms_median"]

    report = {
        "model": "random CLIP ViT-B/16 (HF format), fp32",
        "work_dir": str(work_dir),
        "onnx": str(onnx_path),
        "frames": FRAMES,
        "threads": args.threads,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "m2clip_iterations_per_round": args.m2clip_iterations,
        "cpu": cpu_name(),
        "load_average_1m": load_before,
        "m2clip_status": m2clip_status,
        "engines": results,
        "ratios": ratios,
        "ort_vs_pytorch_max_abs_diff": difference,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    print(f"CLIP ViT-B/16 image tower, {FRAMES} frames x 224x224 fp32, {args.threads} threads, "
          f"median of {args.iterations} interleaved rounds ({args.warmup} warm-up)")
    print(f"{cpu_name()}, load average {load_before:.2f} at start")
    print(f"{'engine':<13} {'median ms':>10} {'p90 ms':>10} {'min ms':>10}  ms/frame")
    for name in ("m2clip", "onnxruntime", "pytorch"):
        if name not in results:
            print(f"{name:<13} {'-':>10} {'-':>10} {'-':>10}  ({m2clip_status.splitlines()[0]})")
            continue
        r = results[name]
        print(f"{name:<13} {r['ms_median']:>10.1f} {r['ms_p90']:>10.1f} {r['ms_min']:>10.1f}"
              f"  {r['ms_median'] / FRAMES:8.1f}")
    for key, value in ratios.items():
        print(f"{key}: {value:.3f}")
    if m2clip_bench is not None and "kernels" in m2clip_bench:
        print(f"m2clip kernels: {m2clip_bench['kernels']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
