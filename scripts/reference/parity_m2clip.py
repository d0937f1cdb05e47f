#!/usr/bin/env python3
"""Full-size parity of the Swift M²-CLIP engine against the independent PyTorch reference.

Builds (or reuses) a seeded random M²-CLIP-B/16 — standard CLIP ViT-B/16 dims, TED width 384,
post adapter 256, text adapter 384 in text block 11, C = 400 — with every adapter weight random and
non-zero (recipe in random_m2clip.py, adapter gain 0.2, logit_scale log 100), saved as fp32
safetensors in the authors' release names, including what inference must skip (the CMLM text
block 12 = copy of block 11 with its own text adapter, and mlm_adapter.* with the 520-word K400
vocabulary). Two variants share every tensor they have in common:

    WORK/premlp/           TED before the FFN of all 12 visual blocks (release K400 preset)
    WORK/preattn_premlp/   TED before attention and before the FFN of all 12 (SSv2 preset)

each with weights.safetensors, config.json (m2clip-config, see m2clip_reference.py), labels.txt
(the 400 K400 class names, one per line) and reference-T{T}.safetensors; WORK/pixels-T{T}.safetensors
holds pixel_values F32 (T, 3, 224, 224), video-like and CLIP-normalised. The reference (fp32,
m2clip_reference.forward; prompts "A video of {label}" tokenised by transformers' CLIPTokenizer
from Resources/CLIPVocabulary/clip-tokenizer) stores frame_embeds (T, 512), clip_frame_embeds,
video_embed (512), vc_logits (400), label_text_embeds (400, 512), label_scores (400),
label_token_ids (400, 77), logit_scale_exp.

Unless --reference-only, it then runs for each variant (m2clip infers the configuration from the
tensor names; the preset only asserts the TED placement: premlp -> k400, preattn_premlp -> ssv2)

    m2clip convert --authors WORK/V/weights.safetensors --labels WORK/V/labels.txt --preset P
        --out WORK/V/model.m2c
    m2clip embed --model WORK/V/model.m2c --pixels WORK/pixels-T{T}.safetensors --json

expecting JSON with frame_embeds [T][512], video_embed [512], vc_logits [C], label_scores [C]
(label_text_embeds [C][512] compared when present; camelCase keys accepted), and prints per output
the minimum row cosine and maximum absolute difference against the bar: cosine >= 0.9999 and
max abs <= 1e-3 (vc_logits: max abs <= 1e-3 x max(1, max |reference|)). Exit status: 0 all pass,
1 a failure (or m2clip failed), 2 m2clip missing.

--hf-check additionally evaluates the CLIP part (TED off, post adapter off, text adapter off) of
the weights with both the reference and transformers' CLIPModel (fp32, eager) on 2 frames and 8
prompts, and prints the max difference and how far the TED model moves the video embedding.

Run from anywhere (first build ~1.4 GB in /tmp, ~30 s; reference ~15 s per variant and T):

    python3 scripts/reference/parity_m2clip.py [--m2clip .build/release/m2clip] [--reference-only]
        [--work-dir /tmp/m2clip-b16-full] [--variant premlp --variant preattn_premlp]
        [--frames 8 --frames 16] [--seed 0] [--threads 2] [--hf-check] [--rebuild]
"""

import argparse
import copy
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import m2clip_reference as ref  # noqa: E402
import random_m2clip  # noqa: E402

REPO_ROOT = Path(ref.REPO_ROOT)
DEFAULT_M2CLIP = REPO_ROOT / ".build" / "release" / "m2clip"
DEFAULT_WORK_DIR = Path("/tmp/m2clip-b16-full")
LABELS_CSV = Path("/work/shared/data/labels/kinetics_400_labels.csv")
MLM_WORDS = Path("/work/shared/data/labels/k400_mlm_words.txt")
RECIPE = {"recipe": 1, "model": "m2clip-b16-random", "adapter_gain": 0.2}
COSINE_BAR = 0.9999
MAX_ABS_BAR = 1e-3

VARIANTS = {"premlp": ["preMLP"], "preattn_premlp": ["preAttention", "preMLP"]}
PRESETS = {"premlp": "k400", "preattn_premlp": "ssv2"}  # m2clip convert --preset


def b16_config(positions) -> ref.M2ClipConfig:
    c = ref.M2ClipConfig(
        vision_width=768, vision_layers=12, vision_heads=12, vision_patch_size=16, image_size=224,
        text_width=512, text_layers=12, text_heads=8, vocab_size=49408, context_length=77,
        sot_token_id=49406, eot_token_id=49407, projection_dim=512,
        ted=ref.TEDConfig(positions=list(positions), layers=list(range(12)), width=384, te=True, td=True),
        post_adapter=ref.PostAdapterConfig(enabled=True, width=256),
        text_adapter=ref.TextAdapterConfig(layers=[11], width=384),
        classes=400,
    )
    c.validate()
    return c


def k400_labels():
    if LABELS_CSV.exists():
        with open(LABELS_CSV, newline="") as f:
            return [row["name"] for row in csv.DictReader(f)]
    return [f"action number {i}" for i in range(400)]


def mlm_vocab_size() -> int:
    if MLM_WORDS.exists():
        return sum(1 for line in open(MLM_WORDS) if line.strip())
    return 520


def ensure_checkpoints(work: Path, seed: int, rebuild: bool) -> None:
    """WORK/{variant}/weights.safetensors + config.json + labels.txt, built once per recipe."""
    marker = work / "m2clip-recipe.json"
    wanted = {**RECIPE, "seed": seed}
    files = [work / v / f for v in VARIANTS for f in ("weights.safetensors", "config.json", "labels.txt")]
    if not rebuild and marker.exists() and all(f.exists() for f in files):
        if json.loads(marker.read_text()) == wanted:
            print(f"reusing checkpoints in {work}")
            return
    if marker.exists():
        marker.unlink()
    start = time.perf_counter()
    superset = b16_config(VARIANTS["preattn_premlp"])
    w = random_m2clip.random_weights(superset, seed, adapter_gain=RECIPE["adapter_gain"],
                                     logit_scale=math.log(100.0), release_extras=True,
                                     mlm_vocab=mlm_vocab_size())
    print(f"built {len(w)} tensors, {sum(t.numel() for t in w.values()) / 1e6:.1f} M parameters "
          f"in {time.perf_counter() - start:.1f} s")
    labels = k400_labels()
    for variant, positions in VARIANTS.items():
        config = b16_config(positions)
        directory = work / variant
        directory.mkdir(parents=True, exist_ok=True)
        keep = {n: t for n, t in w.items() if n in ref.expected_shapes(config) or ref.is_skipped(n, config)}
        ref.select_weights(keep, config, strict=True)
        t0 = time.perf_counter()
        save_file(keep, str(directory / "weights.safetensors"),
                  metadata={"producer": "scripts/reference/parity_m2clip.py", "names": "authors' M2-CLIP release"})
        config.save(str(directory / "config.json"))
        (directory / "labels.txt").write_text("\n".join(labels) + "\n")
        size = (directory / "weights.safetensors").stat().st_size
        print(f"wrote {directory}/weights.safetensors ({len(keep)} tensors, {size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t0:.1f} s")
    marker.write_text(json.dumps(wanted, indent=2) + "\n")


def pixels_path(work: Path, frames: int, seed: int) -> Path:
    path = work / f"pixels-T{frames}.safetensors"
    pixels = random_m2clip.make_clip(frames, 224, seed=seed * 1000 + frames)
    if not path.exists() or not torch.equal(load_file(str(path))["pixel_values"], pixels):
        save_file({"pixel_values": pixels}, str(path))
    return path


def compare(name, expected: torch.Tensor, actual: torch.Tensor):
    """(min row cosine, max abs diff, bar on max abs, passed, note)."""
    bar = MAX_ABS_BAR * max(1.0, float(expected.abs().max())) if name == "vc_logits" else MAX_ABS_BAR
    if tuple(actual.shape) != tuple(expected.shape):
        return None, float("inf"), bar, False, f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if not torch.isfinite(actual).all():
        return None, float("inf"), bar, False, "non-finite values"
    max_abs = float((actual.double() - expected.double()).abs().max())
    rows = expected.double().reshape(-1, expected.shape[-1])
    cos = torch.nn.functional.cosine_similarity(actual.double().reshape(rows.shape), rows, dim=1)
    cosine = float(cos.min())
    return cosine, max_abs, bar, (max_abs <= bar and cosine >= COSINE_BAR), ""


def run_m2clip(binary: Path, arguments, timeout=3600.0):
    command = [str(binary), *arguments]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit status {done.returncode}\n{done.stderr.strip()}")
    return done.stdout, elapsed


def parse_json(text: str) -> dict:
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text[text.find("{"):])


def swift_outputs(result: dict, reference: dict) -> dict:
    aliases = {"frame_embeds": "frameEmbeds", "video_embed": "videoEmbed", "vc_logits": "vcLogits",
               "label_scores": "labelScores", "label_text_embeds": "labelTextEmbeds"}
    out = {}
    for name, camel in aliases.items():
        value = result.get(name, result.get(camel))
        if value is None:
            continue
        t = torch.tensor(value, dtype=torch.float32)
        if t.dim() == reference[name].dim() + 1 and t.shape[0] == 1:  # a batch of one clip
            t = t[0]
        out[name] = t
    return out


@torch.no_grad()
def hf_check(work: Path, seed: int) -> None:
    """CLIP part of the weights: reference vs transformers CLIPModel (fp32, eager)."""
    config = b16_config(["preMLP"])
    plain = copy.deepcopy(config)
    plain.ted.layers, plain.post_adapter.enabled, plain.text_adapter.layers = [], False, []
    state = load_file(str(work / "premlp" / "weights.safetensors"))
    w_ted = ref.select_weights(state, config)
    w = ref.select_weights(state, plain, strict=False)
    pixels = random_m2clip.make_clip(2, 224, seed=seed * 1000 + 2)
    labels = k400_labels()[:8]
    ids = ref.pad_token_ids(ref.tokenize_prompts(labels, config.prompt_template, ref.DEFAULT_TOKENIZER_DIR, 77), 77)
    t0 = time.perf_counter()
    ours = ref.forward(w, plain, pixels, ids)
    ted = ref.forward(w_ted, config, pixels, ids)
    model = ref.hf_clip_model(w, plain, dtype=torch.float32, attention="eager")
    image = model.get_image_features(pixel_values=pixels)
    image = getattr(image, "pooler_output", image)
    text = []
    for row in ids:
        t = model.get_text_features(input_ids=row[None, :int(row.argmax()) + 1])
        text.append(getattr(t, "pooler_output", t)[0])
    text = torch.stack(text)
    print(f"\nHF check (CLIP part, 2 frames, 8 prompts, {time.perf_counter() - t0:.1f} s): "
          f"max |reference - transformers fp32|: image embeds "
          f"{float((ours['clip_frame_embeds'] - image).abs().max()):.2e} (norm "
          f"{float(image.norm(dim=1).mean()):.2f}), text embeds {float((ours['label_text_embeds'] - text).abs().max()):.2e}"
          f" (norm {float(text.norm(dim=1).mean()):.2f})")
    cos = torch.nn.functional.cosine_similarity
    print(f"  adapters' effect: cos(video_embed TED, plain CLIP) {float(cos(ted['video_embed'], ours['video_embed'], dim=0)):.4f}; "
          f"cos(label_text_embeds with/without text adapter) min "
          f"{float(cos(ted['label_text_embeds'], ours['label_text_embeds'], dim=1).min()):.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Full-size M²-CLIP-B/16 parity: Swift m2clip vs the PyTorch reference.")
    parser.add_argument("--m2clip", default=str(DEFAULT_M2CLIP), help="m2clip binary")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--frames", action="append", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference-only", action="store_true", help="build weights, pixels, reference; no m2clip")
    parser.add_argument("--hf-check", action="store_true", help="cross-check the CLIP part against transformers")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the checkpoints even if present")
    args = parser.parse_args()
    variants = args.variant or list(VARIANTS)
    frame_counts = args.frames or [8, 16]

    binary = Path(args.m2clip)
    if not args.reference_only and not (binary.is_file() and os.access(binary, os.X_OK)):
        print(f"error: m2clip not found at {binary}: build it with `swift build -c release` in "
              f"{REPO_ROOT}, or pass --m2clip PATH (or use --reference-only)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    ensure_checkpoints(work, args.seed, args.rebuild)
    pixel_files = {t: pixels_path(work, t, args.seed) for t in frame_counts}

    labels = k400_labels()
    t0 = time.perf_counter()
    ids = ref.pad_token_ids(ref.tokenize_prompts(labels, "A video of {label}", ref.DEFAULT_TOKENIZER_DIR, 77), 77)
    print(f"tokenised {len(labels)} prompts in {time.perf_counter() - t0:.1f} s "
          f"(longest {int(ids.argmax(dim=1).max()) + 1} tokens)")

    all_passed = True
    text_cache = None
    for variant in variants:
        directory = work / variant
        config = ref.M2ClipConfig.load(str(directory / "config.json"))
        t0 = time.perf_counter()
        w = ref.load_weights(str(directory / "weights.safetensors"), config)
        print(f"\n[{variant}] TED {config.ted.positions} x {len(config.ted.layers)} blocks; "
              f"loaded {len(w)} tensors in {time.perf_counter() - t0:.1f} s")
        if text_cache is None:  # the text tower is identical in every variant
            t0 = time.perf_counter()
            text_cache = ref.encode_labels(ids, w, config)
            print(f"  text tower: {len(labels)} label embeddings in {time.perf_counter() - t0:.1f} s")
        references = {}
        for frames, path in pixel_files.items():
            pixels = load_file(str(path))["pixel_values"]
            t0 = time.perf_counter()
            out = ref.forward(w, config, pixels)
            out["label_text_embeds"] = text_cache
            out["label_scores"] = ref.label_scores(out["video_embed"][None], text_cache, w["logit_scale"])[0]
            out["label_token_ids"] = ids
            elapsed = time.perf_counter() - t0
            save_file({n: t.contiguous() for n, t in out.items()}, str(directory / f"reference-T{frames}.safetensors"),
                      metadata={"producer": "scripts/reference/parity_m2clip.py", "variant": variant,
                                "pixels": str(path)})
            references[frames] = out
            top = torch.topk(out["label_scores"], 3)
            unit = torch.nn.functional.normalize(out["frame_embeds"], dim=1)
            off = (unit @ unit.T)[~torch.eye(frames, dtype=torch.bool)]
            print(f"  T={frames}: reference in {elapsed:.1f} s; |frame| {float(out['frame_embeds'].norm(dim=1).mean()):.2f}, "
                  f"frame-to-frame cos {float(off.mean()):.3f}, |vc_logits| max {float(out['vc_logits'].abs().max()):.2f}, "
                  f"top label scores {[round(float(s), 3) for s in top.values]}")
        if args.reference_only:
            continue

        model_path = directory / "model.m2c"
        try:
            _, seconds = run_m2clip(binary, ["convert", "--authors", str(directory / "weights.safetensors"),
                                             "--labels", str(directory / "labels.txt"),
                                             "--preset", PRESETS[variant], "--out", str(model_path)])
            print(f"  m2clip convert: {seconds:.1f} s")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for frames, path in pixel_files.items():
            try:
                stdout, seconds = run_m2clip(binary, ["embed", "--model", str(model_path),
                                                      "--pixels", str(path), "--json"])
                actual = swift_outputs(parse_json(stdout), references[frames])
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            print(f"  T={frames}: m2clip embed {seconds:.1f} s")
            print(f"    {'output':<18} {'shape':<10} {'min cosine':>14} {'max abs diff':>13} {'bar':>9}  result")
            for name in ("frame_embeds", "video_embed", "vc_logits", "label_scores", "label_text_embeds"):
                expected = references[frames][name]
                if name not in actual:
                    if name == "label_text_embeds":
                        continue
                    print(f"    {name:<18} missing from m2clip's JSON  FAIL")
                    all_passed = False
                    continue
                cosine, max_abs, bar, passed, note = compare(name, expected, actual[name])
                all_passed &= passed
                shape = "x".join(str(s) for s in expected.shape)
                cos_text = "-" if cosine is None else f"{cosine:.10f}"
                print(f"    {name:<18} {shape:<10} {cos_text:>14} {max_abs:>13.3e} {bar:>9.1e}  "
                      f"{'pass' if passed else 'FAIL'}{'  ' + note if note else ''}")
    if args.hf_check:
        hf_check(work, args.seed)
    if args.reference_only:
        print(f"\nreference written under {work}")
        return 0
    print(f"\nbar: cosine >= {COSINE_BAR}, max abs <= {MAX_ABS_BAR:g} (vc_logits scaled by max(1, max|ref|))")
    print("PASS" if all_passed else "FAIL")
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
