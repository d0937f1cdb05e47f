#!/usr/bin/env python3
"""One full-size M²-CLIP training step: `m2clip train grad` against PyTorch autograd.

Two jobs on the same seeded random M²-CLIP-B/16 (CLIP ViT-B/16 sizes, every adapter random and
non-zero, recipe in scripts/reference/random_m2clip.py) in the authors' release names, built for
each release layout (spec §3 table) in WORK/{layout}/:

    k400   TED before the FFN of visual blocks 0-11; text adapters before the FFN of text block 11
           and of the CMLM block 12; 400 Kinetics classes, the 520-word K400 MLM vocabulary
    ssv2   TED before attention and before the FFN of blocks 0-11; text adapters before attention
           and before the FFN of all 12 text blocks and of the CMLM block (26); 174 SSv2
           classes, the SSv2 MLM vocabulary

`m2clip convert --authors ... --preset LAYOUT --mlm-words ...` turns each into WORK/{layout}/model.m2c.
A batch of B clips (video-like CLIP-normalised frames, distinct labels, each clip's prompt
"A video of {label}" with about a fifth of its words masked as CMLM does) goes to both sides.

--check (default): the gradient of the total loss (all four terms, the paper's weights) for every
trainable tensor from m2clip (once per kernel variant in --kernels, forced with --kernels) against
scripts/reference/m2clip_training_reference.py in float64 autograd; per tensor cosine >= 0.9999
and max abs error <= 1e-3 x max |g_ref|; every loss term to 1e-4 relative (absolute 1e-6 for terms
near zero). Prints the worst tensor per layout and variant; exit 1 on any failure.

--bench: one training step side by side, B clips (use --batch 4), 2 threads, the same weights and
batch: PyTorch fp32 autograd (the reference with F.linear / F.layer_norm /
F.scaled_dot_product_attention swapped in, frozen tensors requires_grad=False, in its own process),
its text sequences either over all 77 positions as the release runs them ("full") or cut after
the last EOT as m2clip does ("trimmed": m2clip's own saving given to the peer), and
`m2clip train grad --iterations N`; medians over --iterations steps after one warm-up, peak
RSS of each process (ru_maxrss), and the ratios. --json prints the figures as one JSON object.

    python3 scripts/compare/train_step_vs_torch.py [--m2clip .build/release/m2clip]
        [--work-dir /tmp/m2clip-train-full] [--layout k400 --layout ssv2] [--batch 2] [--frames 8]
        [--kernels avx512,avx2] [--bench --batch 4 --iterations 3] [--threads 2] [--json]

First run builds ~1.4 GB of checkpoints in WORK (~1 min). A float64 reference step takes a few
minutes at full size; m2clip with scalar kernels is slow too (pass --kernels scalar explicitly).
"""

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "reference"))
import m2clip_reference as ref  # noqa: E402
import m2clip_training_reference as tr  # noqa: E402
import random_m2clip  # noqa: E402

REPO_ROOT = HERE.parent.parent
DEFAULT_M2CLIP = REPO_ROOT / ".build" / "release" / "m2clip"
DEFAULT_WORK_DIR = Path("/tmp/m2clip-train-full")
LABELS = Path("/work/shared/data/labels")
RECIPE = {"recipe": 1, "model": "m2clip-b16-train", "adapter_gain": 0.2}
COSINE_BAR = 0.9999
MAX_ABS_BAR = 1e-3
LOSS_REL_BAR = 1e-4

TEXT_MODES = {"full": "over all 77 positions (the release: clip.tokenize pads to 77)",
              "trimmed": "cut after the last EOT (m2clip's trimming, applied to PyTorch too)"}

LAYOUTS = {
    "k400": {"ted": ["preMLP"], "text_layers": [11], "text_positions": ["preMLP"],
             "labels": "kinetics_400_labels.csv", "words": "k400_mlm_words.txt"},
    "ssv2": {"ted": ["preAttention", "preMLP"], "text_layers": list(range(12)),
             "text_positions": ["preAttention", "preMLP"],
             "labels": "something_v2_labels.csv", "words": "ssv2_mlm_words.txt"},
}


def read_words(path: Path) -> list:
    """The release's `word index` lines (or one word a line) in index order."""
    entries = []
    for n, line in enumerate(path.read_text().splitlines()):
        parts = line.split()
        if parts:
            entries.append((int(parts[1]) if len(parts) > 1 else n, parts[0]))
    return [w for _, w in sorted(entries)]


def read_label_names(path: Path) -> list:
    labels, _, _ = ref.read_labels(str(path))
    return labels


def layout_config(layout: str) -> ref.M2ClipConfig:
    spec = LAYOUTS[layout]
    classes = len(read_label_names(LABELS / spec["labels"]))
    c = ref.M2ClipConfig(
        vision_width=768, vision_layers=12, vision_heads=12, vision_patch_size=16, image_size=224,
        text_width=512, text_layers=12, text_heads=8, vocab_size=49408, context_length=77,
        sot_token_id=49406, eot_token_id=49407, projection_dim=512,
        ted=ref.TEDConfig(positions=list(spec["ted"]), layers=list(range(12)), width=384, te=True, td=True),
        post_adapter=ref.PostAdapterConfig(enabled=True, width=256),
        text_adapter=ref.TextAdapterConfig(layers=list(spec["text_layers"]), width=384,
                                           positions=list(spec["text_positions"])),
        classes=classes,
        cmlm=ref.CMLMConfig(adapter_positions=list(spec["text_positions"]),
                            words=read_words(LABELS / spec["words"])),
    )
    c.validate()
    return c


def ensure_layout(work: Path, layout: str, config: ref.M2ClipConfig, seed: int, m2clip: Path, log) -> Path:
    """WORK/layout/{weights.safetensors, config.json, labels.txt, words.txt, model.m2c}."""
    directory = work / layout
    marker = directory / "recipe.json"
    wanted = {**RECIPE, "seed": seed, "layout": layout}
    weights = directory / "weights.safetensors"
    if not (marker.exists() and json.loads(marker.read_text()) == wanted and weights.exists()):
        directory.mkdir(parents=True, exist_ok=True)
        if marker.exists():
            marker.unlink()
        start = time.perf_counter()
        w = random_m2clip.random_weights(config, seed, adapter_gain=RECIPE["adapter_gain"],
                                         shapes=tr.training_shapes(config))
        save_file(w, str(weights), metadata={"producer": "scripts/compare/train_step_vs_torch.py",
                                             "names": "authors' M2-CLIP release"})
        config.save(str(directory / "config.json"))
        spec = LAYOUTS[layout]
        (directory / "labels.txt").write_text("\n".join(read_label_names(LABELS / spec["labels"])) + "\n")
        (directory / "words.txt").write_text("\n".join(config.cmlm.words) + "\n")
        marker.write_text(json.dumps(wanted, indent=2) + "\n")
        log(f"{layout}: {len(w)} tensors, {sum(t.numel() for t in w.values()) / 1e6:.1f} M parameters, "
            f"{sum(t.numel() for n, t in w.items() if tr.is_trainable(n)) / 1e6:.2f} M trainable "
            f"in {time.perf_counter() - start:.0f} s")
    model = directory / "model.m2c"
    newest = max(weights.stat().st_mtime, m2clip.stat().st_mtime)
    if not model.exists() or model.stat().st_mtime < newest:
        run([str(m2clip), "convert", "--authors", str(weights), "--labels", str(directory / "labels.txt"),
             "--preset", layout, "--mlm-words", str(directory / "words.txt"), "--out", str(model)], log)
    return directory


def run(arguments: list, log, parse_json: bool = False):
    start = time.perf_counter()
    done = subprocess.run(arguments, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(arguments[:3])} ... failed ({done.returncode}):\n{done.stderr.strip()}")
    log(f"  {Path(arguments[0]).name} {' '.join(arguments[1:3])}: {time.perf_counter() - start:.1f} s")
    return json.loads(done.stdout) if parse_json else done.stdout


# --------------------------------------------------------------------------------------------
# The batch


def masked_prompt(prompt: str, words: list, tokenizer, context: int, rng: random.Random):
    """(ids, mlm_labels) as CMLM masks a prompt: about 20 % of its words that are in the MLM
    vocabulary (at least one) become "mask"; each of their tokens is labelled with the word's index."""
    index = {w: i for i, w in reversed(list(enumerate(words)))}
    split = prompt.lower().split()
    candidates = [i for i, w in enumerate(split) if w in index]
    count = min(len(candidates), max(1, round(len(split) * 0.2))) if candidates else 0
    chosen = set(rng.sample(candidates, count))
    ids, labels = [tokenizer.bos_token_id], [tr.IGNORE_INDEX] * context
    for i, word in enumerate(split):
        for piece in tokenizer("mask" if i in chosen else word)["input_ids"][1:-1]:
            if len(ids) < context - 1:
                if i in chosen:
                    labels[len(ids)] = index[word]
                ids.append(piece)
    ids.append(tokenizer.eos_token_id)
    return ids + [0] * (context - len(ids)), labels


def make_batch(directory: Path, config: ref.M2ClipConfig, clips: int, frames: int, seed: int) -> Path:
    """WORK/layout/batch-B{clips}-T{frames}.safetensors, shared by m2clip and the reference."""
    path = directory / f"batch-B{clips}-T{frames}-s{seed}.safetensors"
    if path.exists():
        return path
    from transformers import CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer = CLIPTokenizer.from_pretrained(ref.DEFAULT_TOKENIZER_DIR)
    labels_text = read_label_names(directory / "labels.txt")
    rng = random.Random(seed)
    labels = rng.sample(range(len(labels_text)), clips)
    ids, mlm = zip(*(masked_prompt(ref.DEFAULT_TEMPLATE.format(label=labels_text[c]), config.cmlm.words,
                                   tokenizer, config.context_length, rng) for c in labels))
    pixels = torch.stack([random_m2clip.make_clip(frames, config.image_size, seed + 1 + i) for i in range(clips)])
    save_file({"pixel_values": pixels.float().contiguous(),
               "labels": torch.tensor(labels, dtype=torch.int64),
               "input_ids": torch.tensor(ids, dtype=torch.int64),
               "mlm_labels": torch.tensor(mlm, dtype=torch.int64)}, str(path))
    return path


def prepare(args, layout: str, log):
    """(config, WORK/layout with its model file, the batch file) for one layout."""
    config = layout_config(layout)
    directory = ensure_layout(args.work_dir, layout, config, args.seed, args.m2clip, log)
    return config, directory, make_batch(directory, config, args.batch, args.frames, args.seed)


def reference_batch(directory: Path, batch_path: Path, config: ref.M2ClipConfig) -> dict:
    """The batch plus class_token_ids (the C class prompts), as the reference takes it."""
    batch = tr.load_batch(str(batch_path))
    labels_text = read_label_names(directory / "labels.txt")
    class_ids = ref.tokenize_prompts(labels_text, ref.DEFAULT_TEMPLATE, ref.DEFAULT_TOKENIZER_DIR,
                                     config.context_length)
    batch["class_token_ids"] = ref.pad_token_ids(class_ids, config.context_length)
    return batch


# --------------------------------------------------------------------------------------------
# --check


def reference_gradients(directory: Path, config, batch_path: Path, threads: int, log):
    """float64 autograd losses and gradients, cached beside the batch."""
    out = batch_path.with_name(batch_path.stem + "-reference.safetensors")
    if not out.exists() or out.stat().st_mtime < (directory / "weights.safetensors").stat().st_mtime:
        run([sys.executable, str(HERE.parent / "reference" / "m2clip_training_reference.py"),
             "--weights", str(directory / "weights.safetensors"), "--config", str(directory / "config.json"),
             "--batch", str(batch_path), "--labels", str(directory / "labels.txt"), "--out", str(out),
             "--dtype", "float64",
             "--threads", str(threads)], log)
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        losses = json.loads(f.metadata()["losses"])
    return losses, load_file(str(out))


def compare(reference_losses, reference_grads, losses, grads):
    rows, failures = [], []
    for name, g_ref in reference_grads.items():
        if name not in grads:
            failures.append(f"{name}: missing from m2clip's gradients")
            continue
        a, b = grads[name].double().flatten(), g_ref.double().flatten()
        if a.shape != b.shape:
            failures.append(f"{name}: shape {tuple(grads[name].shape)} vs {tuple(g_ref.shape)}")
            continue
        scale = b.abs().max().item()
        err = (a - b).abs().max().item()
        cosine = 1.0 if scale == 0 and err == 0 else (a @ b / (a.norm() * b.norm()).clamp_min(1e-300)).item()
        rows.append((name, cosine, err / max(scale, 1e-300), scale))
        if cosine < COSINE_BAR or err > MAX_ABS_BAR * scale:
            failures.append(f"{name}: cosine {cosine:.6f}, max abs {err:.3e} vs max |g| {scale:.3e}")
    for name in grads:
        if name not in reference_grads:
            failures.append(f"{name}: m2clip has a gradient the reference does not train")
    loss_rows = []
    for name in tr.LOSS_NAMES:
        want, got = reference_losses[name], losses[name]
        rel = abs(got - want) / max(abs(want), 1e-2)
        loss_rows.append((name, want, got, rel))
        if rel > LOSS_REL_BAR:
            failures.append(f"loss {name}: m2clip {got:.8f} vs reference {want:.8f} (rel {rel:.2e})")
    return rows, loss_rows, failures


def check(args, log) -> dict:
    report = {}
    for layout in args.layout:
        config, directory, batch = prepare(args, layout, log)
        reference_losses, reference_grads = reference_gradients(directory, config, batch, args.threads, log)
        for variant in args.kernels:
            out = directory / f"grads-{variant}.safetensors"
            result = run([str(args.m2clip), "train", "grad", "--model", str(directory / "model.m2c"),
                          "--batch", str(batch), "--out", str(out), "--threads", str(args.threads),
                          "--kernels", variant, "--json"], log, parse_json=True)
            rows, loss_rows, failures = compare(reference_losses, reference_grads, result["losses"],
                                                load_file(str(out)))
            worst_cos = min(rows, key=lambda r: r[1])
            worst_err = max(rows, key=lambda r: r[2])
            worst_loss = max(loss_rows, key=lambda r: r[3])
            report[f"{layout}/{variant}"] = {
                "tensors": len(rows), "min_cosine": worst_cos[1], "min_cosine_tensor": worst_cos[0],
                "max_rel_abs_err": worst_err[2], "max_rel_abs_err_tensor": worst_err[0],
                "max_loss_rel_err": worst_loss[3], "losses": result["losses"],
                "reference_losses": reference_losses, "kernels": result.get("kernels"),
                "step_ms": result.get("step_ms_median"), "failures": failures}
            log(f"{layout} [{result.get('kernels', variant)}]: {len(rows)} tensors, min cosine "
                f"{worst_cos[1]:.7f} ({worst_cos[0]}), max |err|/max|g| {worst_err[2]:.2e} ({worst_err[0]}); "
                f"losses max rel {worst_loss[3]:.1e} ({worst_loss[0]}); "
                + ("PASS" if not failures else f"FAIL ({len(failures)})"))
            for line in failures[:10]:
                log(f"    {line}")
            for name, want, got, rel in loss_rows:
                log(f"    {name:<16} reference {want:.8f}  m2clip {got:.8f}  rel {rel:.1e}")
    return report


# --------------------------------------------------------------------------------------------
# --bench


def torch_step(args) -> dict:
    """In this (child) process: median fp32 autograd step time and the process's peak RSS."""
    torch.set_num_threads(args.threads)
    directory = args.work_dir / args.layout[0]
    config = ref.M2ClipConfig.load(str(directory / "config.json"))
    w = tr.load_training_weights(str(directory / "weights.safetensors"), config, dtype=torch.float32)
    batch = reference_batch(directory, Path(args.torch_batch), config)
    tr.TRIM_SEQUENCES = args.torch_text == "trimmed"
    times = []
    with tr.fused_ops():
        for _ in range(args.iterations + 1):
            start = time.perf_counter()
            losses, _ = tr.training_gradients(w, config, batch)
            times.append(time.perf_counter() - start)
    steady = sorted(times[1:])
    return {"step_ms_median": steady[len(steady) // 2] * 1e3, "step_ms": [t * 1e3 for t in times[1:]],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "losses": losses,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def bench(args, log) -> dict:
    report = {}
    for layout in args.layout:
        config, directory, batch = prepare(args, layout, log)
        peers = {text: run([sys.executable, __file__, "--torch-step", str(batch), "--layout", layout,
                            "--work-dir", str(args.work_dir), "--threads", str(args.threads),
                            "--iterations", str(args.iterations), "--torch-text", text], log, parse_json=True)
                 for text in args.torch_texts}
        ours = run([str(args.m2clip), "train", "grad", "--model", str(directory / "model.m2c"),
                    "--batch", str(batch), "--threads", str(args.threads),
                    "--iterations", str(args.iterations), "--json"], log, parse_json=True)
        row = {"clips": args.batch, "frames": args.frames, "classes": config.classes, "threads": args.threads,
               "m2clip": {k: ours[k] for k in ("step_ms_median", "step_ms", "peak_rss_mb", "kernels",
                                               "trainable_parameters", "losses")}}
        log(f"{layout}: B={args.batch} T={args.frames} C={config.classes}, {args.threads} threads; "
            f"m2clip [{ours['kernels']}] {ours['step_ms_median'] / 1e3:.2f} s, {ours['peak_rss_mb']:.0f} MB")
        for text, peer in peers.items():
            ratios = {"time_ratio": ours["step_ms_median"] / peer["step_ms_median"],
                      "rss_ratio": ours["peak_rss_mb"] / peer["peak_rss_mb"]}
            row[f"pytorch_{text}"] = {**peer, **ratios}
            log(f"  PyTorch {peer['torch']} fp32 autograd, text {TEXT_MODES[text]}: "
                f"{peer['step_ms_median'] / 1e3:.2f} s, {peer['peak_rss_mb']:.0f} MB; "
                f"m2clip/PyTorch time {ratios['time_ratio']:.3f}, RSS {ratios['rss_ratio']:.3f}")
        report[layout] = row
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m2clip", type=Path, default=DEFAULT_M2CLIP)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--layout", action="append", choices=sorted(LAYOUTS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kernels", default="avx512,avx2", help="comma-separated variants to force (--check)")
    parser.add_argument("--bench", action="store_true", help="time a step against PyTorch instead of checking")
    parser.add_argument("--iterations", type=int, default=3, help="timed steps after one warm-up (--bench)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--torch-text", dest="torch_texts", action="append", choices=sorted(TEXT_MODES),
                        help="PyTorch's text sequences (--bench; default: both)")
    parser.add_argument("--torch-step", dest="torch_batch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.layout = args.layout or ["k400", "ssv2"]
    args.kernels = [k for k in args.kernels.split(",") if k]
    args.torch_texts = args.torch_texts or ["full", "trimmed"]
    args.torch_text = args.torch_texts[0]
    if args.torch_batch:
        print(json.dumps(torch_step(args)))
        return 0
    if not args.m2clip.exists():
        print(f"error: no m2clip at {args.m2clip} (swift build -c release --product m2clip)", file=sys.stderr)
        return 2
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    torch.set_num_threads(args.threads)
    report = bench(args, log) if args.bench else check(args, log)
    if args.json:
        print(json.dumps(report, indent=1))
    if args.bench:
        return 0
    return 1 if any(r["failures"] for r in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
