"""The M²-CLIP video path for bench_peers.py --model m2clip: checkpoint, ONNX export, model files.

Not meant to be run; bench_peers.py imports it.

- `ensure_checkpoint`: the full-size random M²-CLIP-B/16 with TED before the FFN of all 12 visual
  blocks (K400 placement) in the authors' names, built by scripts/reference/parity_m2clip.py's
  `ensure_checkpoints` into /tmp/m2clip-b16-full/premlp (reused when its recipe marker matches).
- `VideoPath`: pixel_values (T, 3, 224, 224) -> (video_embed (512), vc_logits (400)), computed by
  scripts/reference/m2clip_reference.encode_video (vision tower with TED-Adapters, ln_post +
  projection, temporal post adapter, mean over T, VC head). With `fast=True` (what is exported and
  what PyTorch times) four of the reference's hand-written building blocks are swapped for the
  equivalent library operations, so ONNX Runtime and PyTorch get the graph they run best and the
  peers are not handicapped by the oracle's deliberately naive code:
      layer_norm       -> F.layer_norm             (ORT: LayerNormalization)
      attention        -> scores @ softmax         (no max-subtraction; ORT may fuse it)
      temporal_dwconv  -> zero-padded shifts via cat (no scatter into zeros)
      spatial_dwconv   -> F.conv2d(groups=r)        (ORT: one depthwise Conv)
  `check_fast` compares the fast module with the unmodified reference.
- `export_onnx`: the fast module through torch.onnx.export (opset 17, dynamo exporter, falling
  back to dynamo=False), fixed T, cached in the bench work dir.
- `quantize_onnx` (shared with the CLIP mode): ORT dynamic int8, per-channel QInt8 weights first,
  then reduce_range, then QUInt8, whichever first loads and runs; optionally only some op types
  (the M2-CLIP mode also times a MatMul/Gemm-only variant: quantize_dynamic's default also turns
  the 384-channel depthwise convolutions into ConvInteger, which ORT runs slower than fp32 Conv).
- `ensure_model_files`: `m2clip convert --authors ... --preset k400` and `m2clip quantize --to int8`,
  cached in the bench work dir and redone when the weights or the binary are newer.
"""

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
sys.path.insert(0, str(REFERENCE_DIR))
import m2clip_reference as ref  # noqa: E402

DEFAULT_CHECKPOINT_ROOT = Path("/tmp/m2clip-b16-full")
DEFAULT_BENCH_DIR = Path("/tmp/m2clip-b16-bench")
VARIANT = "premlp"  # K400 placement: TED before the FFN of every visual block
PRESET = "k400"
ONNX_OPSET = 17


def ensure_checkpoint(root: Path, seed: int, log) -> Path:
    """ROOT/premlp with weights.safetensors, config.json, labels.txt (built on first use, ~30 s)."""
    import parity_m2clip  # scripts/reference; prints its own progress to stdout

    with contextlib.redirect_stdout(sys.stderr):
        parity_m2clip.ensure_checkpoints(Path(root), seed, rebuild=False)
    return Path(root) / VARIANT


def make_pixel_values(frames: int, seed: int) -> torch.Tensor:
    """The video-like CLIP-normalised clip parity_m2clip.py uses, (T, 3, 224, 224)."""
    import random_m2clip

    return random_m2clip.make_clip(frames, 224, seed=seed * 1000 + frames).float().contiguous()


def load_vision(checkpoint: Path):
    config = ref.M2ClipConfig.load(str(checkpoint / "config.json"))
    weights = ref.load_weights(str(checkpoint / "weights.safetensors"), config)
    vision = {n: t for n, t in weights.items() if n.startswith("visual.")}
    return config, vision


# ---------------------------------------------------------------------------------------------
# Library-op versions of the reference's building blocks (same maths, checked by check_fast).


def _layer_norm(x, weight, bias, eps):
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def _attention(x, w, prefix, heads, causal):
    assert not causal  # the video path only
    n, length, width = x.shape
    head_dim = width // heads
    qkv = F.linear(x, w[f"{prefix}in_proj_weight"], w[f"{prefix}in_proj_bias"])
    q, k, v = qkv.split(width, dim=-1)
    q, k, v = (t.reshape(n, length, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    probs = torch.softmax((q * (1.0 / math.sqrt(head_dim))) @ k.transpose(-1, -2), dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(n, length, width)
    return F.linear(out, w[f"{prefix}out_proj.weight"], w[f"{prefix}out_proj.bias"])


def _linear(x, w, name):
    return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])


def _temporal_dwconv(h, weight, bias):
    k = weight[:, 0, :]
    zero = torch.zeros_like(h[:, :1])
    previous = torch.cat([zero, h[:, :-1]], dim=1)
    following = torch.cat([h[:, 1:], zero], dim=1)
    return k[:, 0] * previous + k[:, 1] * h + k[:, 2] * following + bias


def _spatial_dwconv(h, weight, bias, grid):
    b, t, m, r = h.shape
    x = h.reshape(b * t, grid, grid, r).permute(0, 3, 1, 2)
    y = F.conv2d(x, weight[:, 0], bias, padding=1, groups=r)
    return y.permute(0, 2, 3, 1).reshape(b, t, m, r)


def _patch_embed(pixels, w, config):
    x = F.conv2d(pixels, w["visual.conv1.weight"], stride=config.vision_patch_size)
    return x.flatten(2).transpose(1, 2)


FAST = {"layer_norm": _layer_norm, "attention": _attention, "linear": _linear,
        "temporal_dwconv": _temporal_dwconv, "spatial_dwconv": _spatial_dwconv,
        "patch_embed": _patch_embed}


@contextlib.contextmanager
def fast_blocks(enabled: bool = True):
    """Swap the reference module's building blocks for FAST while the block runs."""
    saved = {name: getattr(ref, name) for name in FAST}
    try:
        if enabled:
            for name, fn in FAST.items():
                setattr(ref, name, fn)
        yield
    finally:
        for name, fn in saved.items():
            setattr(ref, name, fn)


class VideoPath(torch.nn.Module):
    """pixel_values (T, 3, 224, 224) -> video_embed (P), vc_logits (C), via ref.encode_video."""

    def __init__(self, vision: dict, config, fast: bool = True):
        super().__init__()
        self.config = config
        self.fast = fast
        self.names = list(vision)
        for i, name in enumerate(self.names):  # buffers: exported as initializers
            self.register_buffer(f"w{i}", vision[name].contiguous())

    def weights(self) -> dict:
        return {name: getattr(self, f"w{i}") for i, name in enumerate(self.names)}

    def forward(self, pixel_values):
        with fast_blocks(self.fast):
            out = ref.encode_video(pixel_values.unsqueeze(0), self.weights(), self.config)
        return out["video_embed"][0], out["vc_logits"][0]


def check_fast(vision: dict, config, pixel_values) -> dict:
    """Max abs difference of the fast module vs the unmodified reference (fp32)."""
    with torch.inference_mode():
        exact = VideoPath(vision, config, fast=False)(pixel_values)
        fast = VideoPath(vision, config, fast=True)(pixel_values)
    return {name: float((a - b).abs().max()) for name, a, b in
            zip(("video_embed", "vc_logits"), exact, fast)}


def export_onnx(vision: dict, config, frames: int, path: Path, log) -> tuple[Path, str]:
    """The cached ONNX export of the fast video path; (path, exporter used or 'cached')."""
    if path.exists():
        return path, "cached"
    path.parent.mkdir(parents=True, exist_ok=True)
    module = VideoPath(vision, config, fast=True).eval()
    example = (torch.zeros(frames, 3, config.image_size, config.image_size),)
    partial = path.with_name(path.name + ".partial")
    names = dict(input_names=["pixel_values"], output_names=["video_embed", "vc_logits"])
    log(f"exporting the M2-CLIP video path to {path} (opset {ONNX_OPSET}, T={frames}) ...")
    start = time.perf_counter()
    try:
        torch.onnx.export(module, example, str(partial), opset_version=ONNX_OPSET, dynamo=True,
                          external_data=False, verbose=False, **names)
        exporter = "dynamo"
    except Exception as e:
        log(f"dynamo export failed ({type(e).__name__}: {str(e)[:500]}); trying dynamo=False")
        torch.onnx.export(module, example, str(partial), opset_version=ONNX_OPSET, dynamo=False,
                          **names)
        exporter = "torchscript"
    partial.rename(path)
    log(f"exported with the {exporter} exporter in {time.perf_counter() - start:.0f} s")
    return path, exporter


# ---------------------------------------------------------------------------------------------
# ONNX Runtime dynamic int8

QUANT_ATTEMPTS = [  # (label, keyword arguments of quantize_dynamic beyond per_channel)
    ("per-channel QInt8", dict(weight_type="QInt8", reduce_range=False)),
    ("per-channel QInt8 reduce_range", dict(weight_type="QInt8", reduce_range=True)),
    ("per-channel QUInt8", dict(weight_type="QUInt8", reduce_range=False)),
]


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize_onnx(fp32_path: Path, threads: int, feed: dict, log, op_types=None,
                  tag: str = "") -> tuple[Path | None, str]:
    """ORT dynamic int8 of `fp32_path` (cached next to it, with the settings in a .json).

    Tries QUANT_ATTEMPTS in order; an attempt counts only when the file loads and runs on `feed`.
    `op_types` is quantize_dynamic's op_types_to_quantize (None: its default, every op type it
    knows, which includes Conv -> ConvInteger); `tag` tells the cached files of variants apart.
    Returns (path, settings label) or (None, failure description).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    stem = fp32_path.with_suffix("")
    meta = Path(f"{stem}-int8-dynamic{tag}.json")
    if meta.exists():
        info = json.loads(meta.read_text())
        cached = Path(info["path"])
        if cached.exists() and cached.stat().st_mtime >= fp32_path.stat().st_mtime:
            return cached, info["settings"] + " (cached)"
    failures = []
    for index, (label, kwargs) in enumerate(QUANT_ATTEMPTS):
        out = Path(f"{stem}-int8-dynamic{tag}-{index}.onnx")
        log(f"ORT quantize_dynamic ({label}) -> {out} ...")
        try:
            quantize_dynamic(str(fp32_path), str(out), per_channel=True,
                             weight_type=getattr(QuantType, kwargs["weight_type"]),
                             reduce_range=kwargs["reduce_range"], op_types_to_quantize=op_types)
            _session(out, threads).run(None, feed)
        except Exception as e:
            failures.append(f"{label}: {type(e).__name__}: {str(e)[:300]}")
            log(f"  failed: {failures[-1]}")
            continue
        if op_types:
            label += ", op_types_to_quantize=" + "+".join(op_types)
        meta.write_text(json.dumps({"path": str(out), "settings": label}, indent=2) + "\n")
        return out, label
    return None, "all ORT int8 attempts failed: " + " | ".join(failures)


def quantized_op_counts(path: Path) -> dict:
    """How many nodes of each quantization-related op type the ONNX file holds."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = {}
    for node in model.graph.node:
        if node.op_type in ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul",
                            "MatMul", "ConvInteger", "Conv", "Gemm", "MatMulIntegerToFloat"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# m2clip model files


def ensure_model_files(binary: Path, checkpoint: Path, out_dir: Path, threads: int, run_m2clip,
                       log) -> dict:
    """{'fp32', 'int8', 'fp16': path | None, 'errors': [...], 'quantize_report': dict | None}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = checkpoint / "weights.safetensors"
    newest_input = max(weights.stat().st_mtime, Path(binary).stat().st_mtime)
    result = {"fp32": None, "int8": None, "fp16": None, "errors": [], "quantize_report": None}
    fp32 = out_dir / "model-fp32.m2c"
    int8 = out_dir / "model-int8.m2c"
    report_path = out_dir / "quantize-report.json"

    def fresh(p: Path) -> bool:
        return p.exists() and p.stat().st_mtime >= newest_input

    if not fresh(fp32):
        partial = out_dir / "model-fp32.partial.m2c"
        log(f"m2clip convert --preset {PRESET} -> {fp32} ...")
        try:
            run_m2clip(binary, ["convert", "--authors", str(weights), "--labels",
                                str(checkpoint / "labels.txt"), "--preset", PRESET,
                                "--out", str(partial)], parse=False)
            partial.rename(fp32)
        except Exception as e:
            result["errors"].append(f"m2clip convert failed: {e}")
            log(result["errors"][-1])
            return result
    result["fp32"] = fp32
    if not fresh(int8) or int8.stat().st_mtime < fp32.stat().st_mtime:
        partial = out_dir / "model-int8.partial.m2c"
        log(f"m2clip quantize --to int8 -> {int8} ...")
        try:
            report = run_m2clip(binary, ["quantize", str(fp32), "--to", "int8", "--out", str(partial),
                                         "--threads", str(threads)])
            partial.rename(int8)
            report_path.write_text(json.dumps(report, indent=2) + "\n")
        except Exception as e:
            result["errors"].append(f"m2clip quantize failed: {e}")
            log(result["errors"][-1])
            return result
    result["int8"] = int8
    fp16 = out_dir / "model-fp16.m2c"
    if not fresh(fp16) or fp16.stat().st_mtime < fp32.stat().st_mtime:
        partial = out_dir / "model-fp16.partial.m2c"
        log(f"m2clip quantize --to fp16 -> {fp16} ...")
        try:
            run_m2clip(binary, ["quantize", str(fp32), "--to", "fp16", "--out", str(partial),
                                "--threads", str(threads)])
            partial.rename(fp16)
        except Exception as e:
            result["errors"].append(f"m2clip quantize --to fp16 failed: {e}")
            log(result["errors"][-1])
            return result
    result["fp16"] = fp16
    if report_path.exists():
        try:
            result["quantize_report"] = json.loads(report_path.read_text())
        except json.JSONDecodeError:
            pass
    return result
