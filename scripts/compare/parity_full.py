#!/usr/bin/env python3
"""Full-size parity of `m2clip embed` against Hugging Face transformers (fp32) on CLIP ViT-B/16.

Builds (or reuses) a seeded random CLIP ViT-B/16 in HF format in the work dir (config.json,
model.safetensors, vocab.json, merges.txt; weight recipe in common.py), makes an 8-frame clip of
image-like random pixels and a few texts, computes image_embeds / text_embeds / exp(logit_scale)
with transformers in fp32 (eager attention, each text tokenised by CLIPTokenizer unpadded and
truncated to 77 tokens with EOT last), then runs

    m2clip embed --model DIR --pixels DIR/parity-pixels.safetensors --text T1 --text T2 ... --json

and prints, per output, the minimum cosine over rows, the maximum absolute difference and
pass/fail against the bar: cosine >= 0.99999 and max abs <= 1e-3. Exit status: 0 all pass,
1 a failure (or m2clip failed), 2 m2clip missing.

The work dir also receives parity-reference.safetensors (the transformers outputs and token ids)
for debugging.

Run from anywhere (first run builds the ~600 MB checkpoint, ~15 s; the reference takes ~10 s):

    python3 scripts/compare/parity_full.py [--m2clip .build/release/m2clip]
        [--work-dir /tmp/m2clip-vitb16] [--seed 0] [--frames 8] [--text T ...] [--reference-only]
"""

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import common

COSINE_BAR = 0.99999
MAX_ABS_BAR = 1e-3

DEFAULT_TEXTS = [
    "A video of playing guitar.",
    "a person riding a bike",
    "Two dogs, 3 cats & a bird's nest: who's winning?!",
    # Longer than 77 tokens: exercises truncation with EOT kept last.
    "a long caption about a video in which " + " and ".join(
        f"a {w} person plays {n} instruments" for w, n in
        [("tall", "two"), ("short", "three"), ("young", "four"), ("old", "five"), ("happy", "six"),
         ("quiet", "seven"), ("loud", "eight"), ("tired", "nine"), ("busy", "ten"), ("calm", "many")]),
]


@torch.no_grad()
def reference(model, tokenizer, pixel_values, texts):
    """transformers fp32 outputs: image_embeds (N, 512), text_embeds (K, 512), exp(logit_scale)."""
    image = model.get_image_features(pixel_values=pixel_values)
    image = getattr(image, "pooler_output", image)  # transformers 5 returns an output object
    projected = model.visual_projection(model.vision_model(pixel_values=pixel_values).pooler_output)
    assert torch.equal(image, projected), "get_image_features is not the projected CLS"
    token_ids, text = [], []
    for t in texts:
        ids = tokenizer(t, truncation=True, max_length=77)["input_ids"]
        token_ids.append(torch.tensor(ids, dtype=torch.int64))
        embeds = model.get_text_features(input_ids=token_ids[-1][None])
        text.append(getattr(embeds, "pooler_output", embeds)[0])
    return {
        "image_embeds": image,
        "text_embeds": torch.stack(text) if text else torch.zeros(0, image.shape[1]),
        "logit_scale": model.logit_scale.exp().reshape(1),
    }, token_ids


def compare(name, expected: torch.Tensor, actual: torch.Tensor):
    """(min cosine over rows or None, max abs diff, passed, note)."""
    if tuple(actual.shape) != tuple(expected.shape):
        return None, float("inf"), False, f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if not torch.isfinite(actual).all():
        return None, float("inf"), False, "non-finite values"
    max_abs = float((actual - expected).abs().max()) if expected.numel() else 0.0
    cosine = None
    if expected.dim() == 2 and expected.shape[0] > 0:
        cos = torch.nn.functional.cosine_similarity(actual.double(), expected.double(), dim=1)
        cosine = float(cos.min())
    passed = max_abs <= MAX_ABS_BAR and (cosine is None or cosine >= COSINE_BAR)
    return cosine, max_abs, passed, ""


def describe_reference(outputs, token_ids) -> None:
    """Show that the reference is not degenerate (distinct frames, sensible norms)."""
    image = outputs["image_embeds"]
    unit = torch.nn.functional.normalize(image, dim=1)
    similarity = unit @ unit.T
    off = similarity[~torch.eye(len(image), dtype=torch.bool)]
    print(f"reference image_embeds {tuple(image.shape)}: norm {float(image.norm(dim=1).mean()):.2f}, "
          f"frame-to-frame cosine mean {float(off.mean()):.3f} (min {float(off.min()):.3f}, "
          f"max {float(off.max()):.3f})")
    text = outputs["text_embeds"]
    print(f"reference text_embeds {tuple(text.shape)}: norm {float(text.norm(dim=1).mean()):.2f}, "
          f"token counts {[len(t) for t in token_ids]}")
    print(f"reference exp(logit_scale) {float(outputs['logit_scale'][0]):.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Parity of `m2clip embed` against transformers fp32 on a random CLIP ViT-B/16.")
    parser.add_argument("--m2clip", default=str(common.DEFAULT_M2CLIP), help="m2clip binary")
    parser.add_argument("--work-dir", type=Path, default=common.DEFAULT_WORK_DIR,
                        help="checkpoint directory (built if missing, reused if present)")
    parser.add_argument("--seed", type=int, default=common.DEFAULT_SEED)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--text", action="append", default=None,
                        help="a text to embed (repeatable); default: four built-in texts")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the reference")
    parser.add_argument("--reference-only", action="store_true",
                        help="build the checkpoint, pixels and reference; do not run m2clip")
    args = parser.parse_args()
    texts = args.text if args.text is not None else DEFAULT_TEXTS

    binary = common.find_m2clip(args.m2clip)
    if binary is None and not args.reference_only:
        print(f"error: {common.missing_m2clip_message(args.m2clip)}", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    work_dir = common.ensure_checkpoint(args.work_dir, args.seed)
    pixel_values = common.make_pixel_values(args.frames, 224, args.seed)
    pixels_path = common.save_pixels(pixel_values, work_dir / "parity-pixels.safetensors")

    model = common.load_checkpoint(work_dir, attn_implementation="eager")
    tokenizer = common.load_tokenizer(work_dir)
    expected, token_ids = reference(model, tokenizer, pixel_values, texts)
    save_file({**{k: v.contiguous() for k, v in expected.items()},
               **{f"input_ids.{i}": ids for i, ids in enumerate(token_ids)}},
              str(work_dir / "parity-reference.safetensors"))
    describe_reference(expected, token_ids)
    if args.reference_only:
        print(f"reference written to {work_dir / 'parity-reference.safetensors'}; "
              f"pixels in {pixels_path}")
        return 0

    arguments = ["embed", "--model", str(work_dir), "--pixels", str(pixels_path)]
    for t in texts:
        arguments += ["--text", t]
    try:
        result = common.run_m2clip(binary, arguments)
    except common.M2ClipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    actual = {
        "image_embeds": torch.tensor(result.get("image_embeds", []), dtype=torch.float32),
        "text_embeds": torch.tensor(result.get("text_embeds", []), dtype=torch.float32),
        "logit_scale": torch.tensor([result.get("logit_scale", float("nan"))], dtype=torch.float32),
    }
    if not texts:
        actual["text_embeds"] = actual["text_embeds"].reshape(0, expected["text_embeds"].shape[1])

    print(f"\n{'output':<14} {'shape':<12} {'min cosine':>12} {'max abs diff':>13}  result")
    all_passed = True
    for name in ("image_embeds", "text_embeds", "logit_scale"):
        cosine, max_abs, passed, note = compare(name, expected[name], actual[name])
        all_passed &= passed
        cos_text = "-" if cosine is None else f"{cosine:.9f}"
        shape = "x".join(str(s) for s in expected[name].shape)
        print(f"{name:<14} {shape:<12} {cos_text:>12} {max_abs:>13.3e}  "
              f"{'pass' if passed else 'FAIL'}{'  ' + note if note else ''}")
    print(f"bar: cosine >= {COSINE_BAR}, max abs <= {MAX_ABS_BAR:g}")
    print("PASS" if all_passed else "FAIL")
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
