#!/usr/bin/env python3
"""Interleaved CPU timing of m2clip, ONNX Runtime (fp32 and int8 dynamic) and PyTorch.

Two workloads (`--model`), one clip = pixel_values (8, 3, 224, 224) fp32, CLIP-normalised:

  clip (default)  the CLIP ViT-B/16 image tower -> image_embeds (8, 512) of the seeded random HF
                  checkpoint parity_full.py uses (built into --work-dir if missing).
                  Engines: m2clip-fp32, ort-fp32, ort-int8, pytorch-fp32. m2clip int8 is not
                  timed: its int8 path exists only for .m2c model files (see --model m2clip).
  m2clip          the whole M2-CLIP-B/16 video path of the full-size random model built by
                  scripts/reference/parity_m2clip.py (premlp variant: TED before the FFN of all 12
                  visual blocks, the K400 preset; authors' tensor names): vision tower with
                  TED-Adapters, ln_post + projection, temporal post adapter, mean over T, VC head
                  -> video_embed (512), vc_logits (400). Engines: m2clip-fp32, -fp16 and -int8
                  (`m2clip convert --authors ... --preset k400`, `m2clip quantize --to int8|fp16`,
                  cached in --bench-dir, redone when the weights or the binary are newer),
                  ort-fp32, ort-int8, ort-int8-mm, pytorch-fp32. The ONNX graph is
                  scripts/reference/m2clip_reference.encode_video with library ops for LayerNorm,
                  attention softmax and the depthwise convolutions (scripts/compare/m2clip_video.py),
                  exported by torch.onnx.export (opset 17 requested, dynamo exporter, falling back
                  to dynamo=False; cached); before timing, ORT fp32 is checked against the
                  unmodified reference (max abs diff of video_embed and vc_logits).

How each engine is run, all on the CPU with T threads:

  m2clip-*     `m2clip bench --model DIR|FILE.m2c --frames 8 --threads T --iterations K --json`
               (K = 1 by default); a round's figure is its `clip_ms_median`, timed inside the
               process after its own warm-up clip, so process start and weight loading do not
               count. For a model file this includes the zero-shot scores over the 400 cached
               label embeddings (a (1,512)x(512,400) product; negligible).
  ort-fp32     CPUExecutionProvider, intra_op_num_threads=T, inter_op_num_threads=1, sequential,
               ORT_ENABLE_ALL graph optimisations
  ort-int8     onnxruntime.quantization.quantize_dynamic(fp32.onnx, int8.onnx, per_channel=True,
               weight_type=QuantType.QInt8) (cached next to the fp32 file; if that fails to load
               or run: reduce_range=True, then QUInt8; the report says which was used)
  ort-int8-mm  (m2clip mode) the same with op_types_to_quantize=[MatMul, Gemm]: the default also
               turns the TED depthwise convolutions into ConvInteger, which ORT runs slowly, so
               this is the stronger ORT int8 peer
  pytorch-fp32 transformers CLIPModel (SDPA attention) / the M2-CLIP module above,
               torch.set_num_threads(T), torch.inference_mode

The engines take turns: every round runs each engine once (order rotated each round, a short
pause between engines so spinning worker threads settle); the first `--warmup` rounds are dropped
and the table shows the median, p90 and min over the `--iterations` measured rounds in ms per
clip, the median 1-minute load average seen after each engine's samples (a shared machine's
other work shows there), and the ratios (< 1: m2clip is faster) on medians and on mins. An engine
that cannot be set up or fails is reported with the reason and the others are still timed.
`--json` prints one JSON document instead of the table; progress goes to stderr.

Run from anywhere (the first m2clip-mode run builds the checkpoint ~30 s, converts and quantizes
~40 s, exports ~20 s and quantizes the ONNX ~30 s; later runs reuse all of it):

    python3 scripts/compare/bench_peers.py [--model clip|m2clip] [--m2clip .build/release/m2clip]
        [--threads 2] [--iterations 5] [--warmup 1] [--m2clip-iterations 1]
        [--work-dir /tmp/m2clip-vitb16] [--m2clip-checkpoint-root /tmp/m2clip-b16-full]
        [--bench-dir /tmp/m2clip-b16-bench] [--json]
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
import m2clip_video

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
    def __init__(self, name: str, onnx_path: Path, threads: int, feed: dict):
        import onnxruntime as ort

        self.name = name
        self.session = m2clip_video._session(onnx_path, threads)
        self.inputs = feed
        self.version = ort.__version__

    def run(self) -> list:
        return self.session.run(None, self.inputs)

    def time_ms(self) -> float:
        start = time.perf_counter()
        self.run()
        return (time.perf_counter() - start) * 1e3


class PyTorchEngine:
    def __init__(self, name: str, module: torch.nn.Module, threads: int, pixel_values: torch.Tensor):
        torch.set_num_threads(threads)
        self.name = name
        self.module = module.eval()
        self.pixel_values = pixel_values
        self.version = torch.__version__

    def run(self):
        with torch.inference_mode():
            return self.module(self.pixel_values)

    def time_ms(self) -> float:
        start = time.perf_counter()
        self.run()
        return (time.perf_counter() - start) * 1e3


class M2ClipEngine:
    def __init__(self, name: str, binary: Path, model: Path, threads: int, iterations: int):
        self.name = name
        self.arguments = ["bench", "--model", str(model), "--frames", str(FRAMES),
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


def onnx_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def first(outputs):
    """The first output of an engine's run() as a numpy array."""
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return outputs.numpy() if isinstance(outputs, torch.Tensor) else np.asarray(outputs)


def setup_clip(args, binary, status: dict, notes: list) -> tuple[list, dict]:
    """Engines and report fields of the plain CLIP image-tower comparison."""
    work_dir = common.ensure_checkpoint(args.work_dir, args.seed, log=log)
    pixel_values = common.make_pixel_values(FRAMES, 224, args.seed)
    onnx_path = export_onnx(work_dir)
    feed = {"pixel_values": pixel_values.numpy()}
    engines = []
    if binary is not None:
        engines.append(M2ClipEngine("m2clip-fp32", binary, work_dir, args.threads, args.m2clip_iterations))
    status["m2clip-int8"] = ("n/a: m2clip's int8 path exists only for .m2c model files (the CLIP "
                             "tower of a checkpoint directory runs fp32); see --model m2clip")
    ort_fp32 = OnnxRuntimeEngine("ort-fp32", onnx_path, args.threads, feed)
    engines.append(ort_fp32)
    int8_path, int8_settings = m2clip_video.quantize_onnx(onnx_path, args.threads, feed, log)
    ort_int8 = None
    if int8_path is None:
        status["ort-int8"] = "failed: " + int8_settings
        log("ORT int8: " + int8_settings)
    else:
        ort_int8 = OnnxRuntimeEngine("ort-int8", int8_path, args.threads, feed)
        engines.append(ort_int8)
    torch_engine = PyTorchEngine("pytorch-fp32", ImageTower(common.load_checkpoint(work_dir, "sdpa")),
                                 args.threads, pixel_values)
    engines.append(torch_engine)

    # The export must compute what PyTorch computes, or the ORT figure means nothing.
    expected = first(torch_engine.run())
    checks = {"ort_fp32_vs_pytorch_max_abs_diff": float(np.abs(first(ort_fp32.run()) - expected).max())}
    log(f"ORT fp32 vs PyTorch image_embeds max abs diff: {checks['ort_fp32_vs_pytorch_max_abs_diff']:.2e}")
    if checks["ort_fp32_vs_pytorch_max_abs_diff"] > 1e-3:
        raise SystemExit("error: the ONNX export disagrees with PyTorch; delete it to re-export: "
                         + str(onnx_path))
    if ort_int8 is not None:
        got = first(ort_int8.run())
        checks["ort_int8_vs_pytorch_max_abs_diff"] = float(np.abs(got - expected).max())
        checks["ort_int8_vs_pytorch_min_cosine"] = min_cosine(got, expected)
    notes.append("m2clip int8 is not timed here: its int8 path exists only for .m2c model files "
                 "(use --model m2clip)")
    info = {
        "model": "random CLIP ViT-B/16 (HF format) image tower, pixels (8,3,224,224) -> image_embeds (8,512)",
        "title": f"CLIP ViT-B/16 image tower, {FRAMES} frames x 224x224",
        "work_dir": str(work_dir),
        "onnx_fp32": str(onnx_path),
        "onnx_opset": onnx_opset(onnx_path),
        "onnx_int8": str(int8_path) if int8_path else None,
        "ort_int8_settings": int8_settings,
        "ort_int8_ops": m2clip_video.quantized_op_counts(int8_path) if int8_path else None,
        "checks": checks,
        "ratio_pairs": [("m2clip-fp32", "ort-fp32"), ("m2clip-fp32", "ort-int8"),
                        ("m2clip-fp32", "pytorch-fp32")],
    }
    return engines, info


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.atleast_2d(a).astype(np.float64)
    b = np.atleast_2d(b).astype(np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cos.min())


def setup_m2clip(args, binary, status: dict, notes: list) -> tuple[list, dict]:
    """Engines and report fields of the full M2-CLIP-B/16 video-path comparison."""
    checkpoint = m2clip_video.ensure_checkpoint(args.m2clip_checkpoint_root, args.seed, log)
    bench_dir = args.bench_dir
    bench_dir.mkdir(parents=True, exist_ok=True)
    config, vision = m2clip_video.load_vision(checkpoint)
    pixel_values = m2clip_video.make_pixel_values(FRAMES, args.seed)
    feed = {"pixel_values": pixel_values.numpy()}
    engines = []
    checks = {}

    # m2clip model files first: the subprocesses then do not compete with the Python-side setup.
    files = {"fp32": None, "int8": None, "fp16": None, "errors": [], "quantize_report": None}
    if binary is not None:
        files = m2clip_video.ensure_model_files(binary, checkpoint, bench_dir, args.threads,
                                                common.run_m2clip, log)
        for precision in ("fp32", "int8", "fp16"):
            name = f"m2clip-{precision}"
            if files[precision] is None:
                status[name] = "failed: " + "; ".join(files["errors"])
            else:
                engines.append(M2ClipEngine(name, binary, files[precision], args.threads,
                                            args.m2clip_iterations))

    # The reference (unmodified hand-written ops) and the fast module that is exported and timed.
    torch.set_num_threads(args.threads)
    log("running the PyTorch reference (exact building blocks) ...")
    with torch.inference_mode():
        expected = [t.numpy() for t in m2clip_video.VideoPath(vision, config, fast=False)(pixel_values)]
    module = m2clip_video.VideoPath(vision, config, fast=True).eval()
    torch_engine = PyTorchEngine("pytorch-fp32", module, args.threads, pixel_values)
    fast_out = [t.numpy() for t in torch_engine.run()]
    checks["pytorch_fast_vs_reference_max_abs_diff"] = {
        k: float(np.abs(a - b).max()) for k, a, b in zip(OUTPUTS, fast_out, expected)}

    onnx_path = bench_dir / f"m2clip-video-T{FRAMES}-opset{ONNX_OPSET}.onnx"
    exporter = None
    try:
        onnx_path, exporter = m2clip_video.export_onnx(vision, config, FRAMES, onnx_path, log)
    except Exception as e:
        status["ort-fp32"] = status["ort-int8"] = f"failed: ONNX export: {type(e).__name__}: {str(e)[:500]}"
        log("ONNX export failed, timing the other engines: " + status["ort-fp32"])
        onnx_path = None
    int8_path, int8_settings = None, None
    mm_path, mm_settings = None, None
    if onnx_path is not None:
        ort_fp32 = None
        try:
            ort_fp32 = OnnxRuntimeEngine("ort-fp32", onnx_path, args.threads, feed)
            got = ort_fp32.run()
        except Exception as e:
            status["ort-fp32"] = f"failed: {type(e).__name__}: {str(e)[:500]}"
            log("ORT fp32: " + status["ort-fp32"])
            ort_fp32 = None
        if ort_fp32 is not None:
            diff = {k: float(np.abs(a - b).max()) for k, a, b in zip(OUTPUTS, got, expected)}
            checks["ort_fp32_vs_reference_max_abs_diff"] = diff
            log(f"ORT fp32 vs PyTorch reference max abs diff: " +
                ", ".join(f"{k} {v:.2e}" for k, v in diff.items()))
            bars = {k: 1e-3 * max(1.0, float(np.abs(e).max())) for k, e in zip(OUTPUTS, expected)}
            if any(diff[k] > bars[k] for k in OUTPUTS):
                notes.append(f"WARNING: ORT fp32 disagrees with the reference beyond 1e-3 x max(1, |ref|) "
                             f"({diff}); delete {onnx_path} to re-export")
                log(notes[-1])
            engines.append(ort_fp32)
        try:
            int8_path, int8_settings = m2clip_video.quantize_onnx(onnx_path, args.threads, feed, log)
        except Exception as e:
            int8_path, int8_settings = None, f"{type(e).__name__}: {str(e)[:500]}"
        if int8_path is None:
            status["ort-int8"] = "failed: " + int8_settings
            log("ORT int8: " + status["ort-int8"])
        else:
            ort_int8 = OnnxRuntimeEngine("ort-int8", int8_path, args.threads, feed)
            got = ort_int8.run()
            checks["ort_int8_vs_reference"] = {
                "video_embed_cosine": min_cosine(got[0], expected[0]),
                "video_embed_max_abs_diff": float(np.abs(got[0] - expected[0]).max()),
                "vc_logits_max_abs_diff": float(np.abs(got[1] - expected[1]).max()),
                "vc_top1_agrees": bool(np.argmax(got[1]) == np.argmax(expected[1])),
            }
            engines.append(ort_int8)
        # quantize_dynamic's default also quantizes the depthwise Convs (ConvInteger), which ORT
        # runs slowly; the MatMul/Gemm-only variant is the stronger ORT int8 peer here.
        mm_path, mm_settings = None, None
        try:
            mm_path, mm_settings = m2clip_video.quantize_onnx(onnx_path, args.threads, feed, log,
                                                              op_types=["MatMul", "Gemm"], tag="-mm")
        except Exception as e:
            mm_settings = f"{type(e).__name__}: {str(e)[:500]}"
        if mm_path is None:
            status["ort-int8-mm"] = "failed: " + mm_settings
            log("ORT int8 (MatMul only): " + status["ort-int8-mm"])
        else:
            ort_mm = OnnxRuntimeEngine("ort-int8-mm", mm_path, args.threads, feed)
            got = ort_mm.run()
            checks["ort_int8_mm_vs_reference"] = {
                "video_embed_cosine": min_cosine(got[0], expected[0]),
                "vc_logits_max_abs_diff": float(np.abs(got[1] - expected[1]).max()),
            }
            engines.append(ort_mm)
    engines.append(torch_engine)

    report = files.get("quantize_report")
    info = {
        "model": ("random M2-CLIP-B/16, TED before the FFN of all 12 visual blocks (K400 preset), "
                  "pixels (8,3,224,224) -> video_embed (512) + vc_logits (400)"),
        "title": f"M2-CLIP-B/16 video path (TED premlp x12, temporal adapter, VC head), {FRAMES} frames",
        "checkpoint": str(checkpoint),
        "bench_dir": str(bench_dir),
        "m2clip_fp32_model": str(files["fp32"]) if files["fp32"] else None,
        "m2clip_int8_model": str(files["int8"]) if files["int8"] else None,
        "m2clip_fp16_model": str(files["fp16"]) if files.get("fp16") else None,
        "m2clip_quantize_report": report,
        "onnx_fp32": str(onnx_path) if onnx_path else None,
        "onnx_exporter": exporter,
        "onnx_opset": onnx_opset(onnx_path) if onnx_path else None,
        "onnx_int8": str(int8_path) if int8_path else None,
        "ort_int8_settings": int8_settings,
        "ort_int8_ops": m2clip_video.quantized_op_counts(int8_path) if int8_path else None,
        "onnx_int8_mm": str(mm_path) if onnx_path and mm_path else None,
        "ort_int8_mm_settings": mm_settings if onnx_path else None,
        "checks": checks,
        "ratio_pairs": [("m2clip-int8", "ort-int8"), ("m2clip-int8", "ort-int8-mm"),
                        ("m2clip-fp32", "ort-fp32"), ("m2clip-fp16", "ort-fp32"),
                        ("m2clip-int8", "ort-fp32"), ("m2clip-fp32", "pytorch-fp32")],
    }
    if info["onnx_opset"] not in (None, ONNX_OPSET):
        notes.append(f"the ONNX file is opset {info['onnx_opset']}: torch's dynamo exporter has no "
                     f"opset-{ONNX_OPSET} implementations and its down-conversion failed, so it "
                     f"kept {info['onnx_opset']} (ORT runs it)")
    notes.append("m2clip's figure also includes its zero-shot label scores (400 cached text "
                 "embeddings); the ONNX/PyTorch graphs stop at video_embed + vc_logits")
    notes.append("ONNX/PyTorch run the reference's encode_video with library ops for LayerNorm, "
                 "softmax attention and the depthwise convolutions (m2clip_video.FAST), checked "
                 "against the unmodified reference")
    return engines, info


OUTPUTS = ("video_embed", "vc_logits")
ENGINE_ORDER = ("m2clip-fp32", "m2clip-fp16", "m2clip-int8", "ort-fp32", "ort-int8", "ort-int8-mm", "pytorch-fp32")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Interleaved CPU timing of m2clip (fp32/int8), ONNX Runtime (fp32/int8 dynamic) "
                    "and PyTorch: the CLIP ViT-B/16 image tower or the M2-CLIP-B/16 video path.")
    parser.add_argument("--model", choices=("clip", "m2clip"), default="clip",
                        help="clip: plain CLIP image tower; m2clip: the full M2-CLIP video path")
    parser.add_argument("--m2clip", default=str(common.DEFAULT_M2CLIP), help="m2clip binary")
    parser.add_argument("--work-dir", type=Path, default=common.DEFAULT_WORK_DIR,
                        help="(clip) checkpoint directory shared with parity_full.py")
    parser.add_argument("--m2clip-checkpoint-root", type=Path,
                        default=m2clip_video.DEFAULT_CHECKPOINT_ROOT,
                        help="(m2clip) parity_m2clip.py's work dir; the premlp variant is used")
    parser.add_argument("--bench-dir", type=Path, default=m2clip_video.DEFAULT_BENCH_DIR,
                        help="(m2clip) cache of the .m2c model files and ONNX exports")
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

    status = {}  # engine name -> why it has no figure
    notes = []
    binary = common.find_m2clip(args.m2clip)
    if binary is None:
        status["m2clip-fp32"] = status["m2clip-int8"] = "missing: " + common.missing_m2clip_message(args.m2clip)
        log(status["m2clip-fp32"])
    setup = setup_clip if args.model == "clip" else setup_m2clip
    engines, info = setup(args, binary, status, notes)
    engines.sort(key=lambda e: ENGINE_ORDER.index(e.name))

    load_before = os.getloadavg()[0]  # a shared machine's other work shows here
    samples = {e.name: [] for e in engines}
    sample_loads = {e.name: [] for e in engines}  # 1-minute load average after each sample
    loads = []
    rounds = args.warmup + args.iterations
    for r in range(rounds):
        order = engines[r % len(engines):] + engines[:r % len(engines)]
        figures = []
        for engine in list(order):
            try:
                ms = engine.time_ms()
            except Exception as e:  # an engine that breaks mid-run is dropped, the rest go on
                log(f"{engine.name} failed, continuing without it: {e}")
                status[engine.name] = f"failed: {e}"
                engines.remove(engine)
                samples.pop(engine.name, None)
                continue
            if r >= args.warmup:
                samples[engine.name].append(ms)
                sample_loads[engine.name].append(os.getloadavg()[0])
            figures.append(f"{engine.name} {ms:.0f} ms")
            time.sleep(PAUSE_S)
        loads.append(os.getloadavg()[0])
        label = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}/{args.iterations}"
        log(f"{label}: " + ", ".join(figures) + f" (load {loads[-1]:.2f})")

    results = {}
    for engine in engines:
        values = samples[engine.name]
        results[engine.name] = {
            "ms_median": statistics.median(values),
            "ms_p90": percentile(values, 90),
            "ms_min": min(values),
            "ms_all": values,
            "load_average_1m_median": statistics.median(sample_loads[engine.name]),
        }
        if engine.version:
            results[engine.name]["version"] = engine.version
        if isinstance(engine, M2ClipEngine) and engine.last:
            for key in ("threads", "kernels", "stages", "clip_ms_p90"):
                if key in engine.last:
                    results[engine.name][f"bench_{key}"] = engine.last[key]
    ratios = {}
    for a, b in info.pop("ratio_pairs"):
        if a in results and b in results:
            ratios[f"{a}/{b}"] = results[a]["ms_median"] / results[b]["ms_median"]
            ratios[f"{a}/{b} (min)"] = results[a]["ms_min"] / results[b]["ms_min"]
    title = info.pop("title")

    report = {
        "mode": args.model,
        **info,
        "frames": FRAMES,
        "threads": args.threads,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "m2clip_iterations_per_round": args.m2clip_iterations,
        "cpu": cpu_name(),
        "load_average_1m": load_before,
        "load_average_1m_per_round": loads,
        "engines": results,
        "missing": status,
        "ratios": ratios,
        "notes": notes,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    print(f"{title}, fp32 input, {args.threads} threads, median of {args.iterations} interleaved "
          f"rounds ({args.warmup} warm-up)")
    print(f"{cpu_name()}, load average {load_before:.2f} at start, "
          f"{min(loads):.2f}-{max(loads):.2f} over the rounds")
    print(f"{'engine':<13} {'median ms':>10} {'p90 ms':>10} {'min ms':>10}  {'ms/frame':>8}  load")
    for name in ENGINE_ORDER:
        if name not in results and name not in status:
            continue
        if name not in results:
            why = status[name].splitlines()[0]
            print(f"{name:<13} {'-':>10} {'-':>10} {'-':>10}  {'':>8}  ({why[:150]})")
            continue
        r = results[name]
        print(f"{name:<13} {r['ms_median']:>10.1f} {r['ms_p90']:>10.1f} {r['ms_min']:>10.1f}"
              f"  {r['ms_median'] / FRAMES:8.1f}  {r['load_average_1m_median']:.2f}")
    for key, value in ratios.items():
        if not key.endswith("(min)"):
            print(f"{key}: {value:.3f} (mins: {ratios[key + ' (min)']:.3f})")
    print(f"ORT int8: quantize_dynamic per_channel=True, {info.get('ort_int8_settings')}; "
          f"ops {info.get('ort_int8_ops')}; ONNX opset {info.get('onnx_opset')}")
    if info.get("ort_int8_mm_settings"):
        print(f"ORT int8-mm: quantize_dynamic per_channel=True, {info['ort_int8_mm_settings']}")
    print("checks: " + json.dumps(info["checks"]))
    for name in ("m2clip-fp32", "m2clip-int8"):
        if name in results and "bench_kernels" in results[name]:
            print(f"{name} kernels: {results[name]['bench_kernels']}")
            break
    for note in notes:
        print("note: " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
