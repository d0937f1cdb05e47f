#!/usr/bin/env python3
"""Write Tests/Fixtures/m2clip-tiny/: a tiny random M²-CLIP in the authors' release names, and the
outputs of the independent reference (m2clip_reference.py) for several adapter configurations.

Model: vision width 32, 2 blocks, 4 heads, patch 8, image 32 (4×4 = 16 patches + CLS); text
width 32, 2 blocks, 4 heads, vocabulary 1000 (SOT 998, EOT 999 = highest id), context 77;
projection 24; TED width 16; post-adapter width 12; text-adapter width 16; C = 5 classes.
Every weight is random and non-zero (adapter convs, fc2 and biases included — not the zero init;
recipe in random_m2clip.py, adapter gain 0.3), stored as float16. The reference is computed in
float64 from the float16 values and stored as float32, so an engine that widens the half weights
to float32 should match to float32 accuracy (~1e-6 relative).

Files:
    weights.safetensors       F16, release-like superset: TED-Adapters at adapter_pre_attn and
                              adapter_pre_mlp of visual blocks 0 and 1, both branches (TE and TD);
                              visual.t_adapter; text adapter in text block 1; visual.adapter_fc
                              (5, 32); logit_scale 2.3 (float16 2.30078, exp 9.9817). Inference must skip:
                              the CMLM text block transformer.resblocks.2.* (a copy of block 1),
                              its adapter, and mlm_adapter.* (20-word MLM head).
    weights-clip.safetensors  F16, the same CLIP tensors (identical values), visual.adapter_fc, and
                              visual.t_adapter with conv.weight = conv.bias = fc2.bias = 0 (so the
                              post adapter is the identity); no TED, no text adapter, no CMLM.
    config.json               m2clip-config of weights.safetensors read as a whole (= the case
                              preattn_premlp). Schema: docstring of m2clip_reference.py.
    cases.json                {"cases": [ {name, frames, weights, config, unusedTensors,
                              skippedTensors}, ... ]}. `config` is that case's full m2clip-config.
                              The case reads exactly the tensors its config implies: the file's
                              other tensors are listed, `skippedTensors` (CMLM block, MLM head —
                              every loader skips these) and `unusedTensors` (adapters the case's
                              config does not have — drop them before a strict load).
    labels.json               {"template", "labels": [5 strings], "token_ids": [5 id lists]}: the
                              ids are made up for the tiny vocabulary (SOT 998, "a video of" =
                              21 433 87, label ids, EOT 999; label 4 fills all 77 positions). Feed
                              the ids directly; the strings are for display only.
    reference.safetensors     per case NAME (F32 unless noted):
                                case.NAME.pixel_values       (T, 3, 32, 32) CLIP-normalised clip
                                case.NAME.frame_embeds       (T, 24) after the post adapter
                                case.NAME.clip_frame_embeds  (T, 24) ln_post(CLS) @ proj, before it
                                case.NAME.video_embed        (24)    mean over T of frame_embeds
                                case.NAME.vc_logits          (5)
                                case.NAME.label_text_embeds  (5, 24) text embeddings of labels.json
                                case.NAME.label_scores       (5)     softmax(exp(ls) cos(v, w_k))
                              and label_token_ids I64 (5, 77) (zero padded), logit_scale_exp (1).
                              Metadata: case.NAME.config (JSON), case.NAME.weights (file name),
                              case.NAME.frames, cases (names in order), producer, compute dtype.

Cases (TED on visual blocks 0 and 1 unless noted; text adapter [1]; post adapter on):
    premlp_all       T = 8  TED preMLP, TE + TD (the release's K400 placement)
    preattn_premlp   T = 3  TED preAttention + preMLP, TE + TD (the SSv2 placement)
    te_only          T = 4  TED preMLP, TE branch only
    td_only          T = 4  TED preMLP, TD branch only
    single_frame     T = 1  as premlp_all (TE conv sees zeros both sides; TD's D_1 = 0 only)
    preattn_layer1   T = 2  TED preAttention on block 1 only
    clip_only        T = 3  weights-clip.safetensors: TED off, text adapter off, post adapter
                            with zero conv — must equal plain CLIP (frame embeddings averaged);
                            checked here against transformers.CLIPModel on the same weights.

Run from the repository root (CPU, a few seconds):

    python3 scripts/reference/make_m2clip_fixture.py [--out Tests/Fixtures/m2clip-tiny] [--seed 0]
"""

import argparse
import copy
import json
import os
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import m2clip_reference as ref  # noqa: E402
import random_m2clip  # noqa: E402

SIZE_LIMIT_BYTES = 900_000
LOGIT_SCALE = 2.3
SOT, EOT = 998, 999
PROMPT_PREFIX = [21, 433, 87]  # "a video of" in the made-up tiny vocabulary

BASE = ref.M2ClipConfig(
    vision_width=32, vision_layers=2, vision_heads=4, vision_patch_size=8, image_size=32,
    text_width=32, text_layers=2, text_heads=4, vocab_size=1000, context_length=77,
    sot_token_id=SOT, eot_token_id=EOT, projection_dim=24,
    ted=ref.TEDConfig(positions=["preAttention", "preMLP"], layers=[0, 1], width=16, te=True, td=True),
    post_adapter=ref.PostAdapterConfig(enabled=True, width=12),
    text_adapter=ref.TextAdapterConfig(layers=[1], width=16),
    classes=5,
)


def variant(positions=("preMLP",), layers=(0, 1), te=True, td=True, text_layers=(1,)):
    c = copy.deepcopy(BASE)
    c.ted = ref.TEDConfig(positions=list(positions), layers=list(layers), width=BASE.ted.width,
                          te=te, td=td)
    c.text_adapter = ref.TextAdapterConfig(layers=list(text_layers), width=BASE.text_adapter.width)
    c.validate()
    return c


# name, frames, config, weights file
CASES = [
    ("premlp_all", 8, variant(), "weights.safetensors"),
    ("preattn_premlp", 3, variant(positions=("preAttention", "preMLP")), "weights.safetensors"),
    ("te_only", 4, variant(td=False), "weights.safetensors"),
    ("td_only", 4, variant(te=False), "weights.safetensors"),
    ("single_frame", 1, variant(), "weights.safetensors"),
    ("preattn_layer1", 2, variant(positions=("preAttention",), layers=(1,)), "weights.safetensors"),
    ("clip_only", 3, variant(positions=(), layers=(), text_layers=()), "weights-clip.safetensors"),
]

LABELS = [
    ("juggling balls", [611, 145]),
    ("riding a bike", [702, 21, 389]),
    ("playing the cello with a bow", [520, 240, 811, 66, 21, 930]),
    ("surfing", [357]),
    ("reading a very long list of numbers aloud", None),  # ids filled to the full context
]


def label_token_ids(seed: int):
    g = torch.Generator().manual_seed(seed + 7)
    lists = []
    for _, ids in LABELS:
        if ids is None:
            fill = BASE.context_length - 2 - len(PROMPT_PREFIX)
            ids = torch.randint(1, SOT, (fill,), generator=g).tolist()
        lists.append([SOT, *PROMPT_PREFIX, *ids, EOT])
    assert len(lists[-1]) == BASE.context_length
    return lists


def build_weights(seed: int):
    """(superset state dict, clip-only state dict), float32 tensors holding float16 values."""
    full = random_m2clip.random_weights(BASE, seed, adapter_gain=0.3, logit_scale=LOGIT_SCALE,
                                        release_extras=True, mlm_vocab=20)
    full = {n: t.half().float() for n, t in full.items()}
    clip_names = ref.expected_shapes(variant(positions=(), layers=(), text_layers=()))
    clip = {n: full[n].clone() for n in clip_names}
    clip["visual.t_adapter.conv.weight"].zero_()
    clip["visual.t_adapter.conv.bias"].zero_()
    clip["visual.t_adapter.fc2.bias"].zero_()
    return full, clip


SAFETENSORS_DTYPES = {torch.int64: "I64", torch.float32: "F32", torch.float16: "F16"}


def write_safetensors(path, tensors, metadata=None):
    """A byte-reproducible safetensors file (safetensors' own writer orders the metadata at
    random): keys sorted, tensors ordered by element size (largest first, so every tensor stays
    aligned to its element size) then name, header padded with spaces to a multiple of 8."""
    import struct

    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header, blobs, offset = {}, [], 0
    for name in order:
        t = tensors[name].contiguous()
        data = t.numpy().tobytes()  # little-endian, as the format requires
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    again = load_file(path)
    assert all(torch.equal(again[n], tensors[n]) for n in tensors), f"{path}: round trip failed"


@torch.no_grad()
def hf_crosscheck(w64: dict, config: ref.M2ClipConfig, pixels, ids, out: dict) -> dict:
    """max |reference - transformers| for the TED-off case, with transformers in fp32 and fp64.

    Plain CLIP on the same weights: per-frame image features, their mean (the post adapter is the
    identity here), the VC head on HF's last hidden state, text features of the label prompts, and
    the label scores from those.
    """
    report = {}
    for dtype, attention in ((torch.float32, "eager"), (torch.float64, "sdpa")):
        # Eager attention takes its softmax in float32 whatever the dtype; SDPA keeps float64.
        model = ref.hf_clip_model({n: t.float() for n, t in w64.items()}, config, dtype=dtype,
                                  attention=attention)
        px = pixels.to(dtype)
        vision = model.vision_model(pixel_values=px)
        image = model.visual_projection(vision.pooler_output)  # (T, P)
        feats = model.get_image_features(pixel_values=px)
        feats = getattr(feats, "pooler_output", feats)
        assert torch.equal(feats, image)
        cls_mean = vision.last_hidden_state[:, 0].mean(dim=0)
        vc = model.vision_model.post_layernorm(cls_mean) @ w64["visual.adapter_fc.weight"].to(dtype).T \
            + w64["visual.adapter_fc.bias"].to(dtype)
        text = []
        for row in ids:
            n = int(row.argmax()) + 1
            t = model.get_text_features(input_ids=row[None, :n])
            text.append(getattr(t, "pooler_output", t)[0])
        text = torch.stack(text)
        video = image.mean(dim=0)
        scores = torch.softmax(model.logit_scale.exp() * torch.nn.functional.normalize(video, dim=0)
                               @ torch.nn.functional.normalize(text, dim=1).T, dim=0)
        expected = {"frame_embeds": image, "clip_frame_embeds": image, "video_embed": video,
                    "vc_logits": vc, "label_text_embeds": text, "label_scores": scores}
        report[f"{str(dtype).removeprefix('torch.')} {attention}"] = {
            k: float((out[k].double() - v.double()).abs().max()) for k, v in expected.items()}
    return report


def directory_size(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ref.REPO_ROOT, "Tests", "Fixtures", "m2clip-tiny"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)

    full, clip = build_weights(args.seed)
    files = {"weights.safetensors": full, "weights-clip.safetensors": clip}
    meta = {"producer": "scripts/reference/make_m2clip_fixture.py", "names": "authors' M2-CLIP release"}
    for name, tensors in files.items():
        write_safetensors(os.path.join(args.out, name), {n: t.half() for n, t in tensors.items()}, meta)
    BASE.save(os.path.join(args.out, "config.json"))
    ids_lists = label_token_ids(args.seed)
    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump({"template": BASE.prompt_template, "labels": [l for l, _ in LABELS],
                   "token_ids": ids_lists,
                   "note": "token ids are made up for the tiny 1000-id vocabulary (SOT 998, EOT 999); "
                           "feed them directly, the strings are for display"}, f)
        f.write("\n")
    ids = ref.pad_token_ids(ids_lists, BASE.context_length)

    reference = {"label_token_ids": ids}
    ref_meta = {"producer": meta["producer"], "compute_dtype": "float64",
                "cases": json.dumps([c[0] for c in CASES])}
    cases_json = []
    summary = []
    crosscheck = None
    for index, (name, frames, config, weights_file) in enumerate(CASES):
        # Read back what was written, so the reference sees exactly the stored float16 values.
        state = load_file(os.path.join(args.out, weights_file))
        w64 = ref.select_weights(state, config, strict=False)
        w64 = {n: t.double() for n, t in w64.items()}
        unused = sorted(n for n in state if n not in w64 and not ref.is_skipped(n, config))
        skipped = sorted(n for n in state if n not in w64 and ref.is_skipped(n, config))
        ref.select_weights({n: state[n] for n in state if n not in unused}, config, strict=True)
        pixels = random_m2clip.make_clip(frames, BASE.image_size, seed=args.seed * 100 + index)
        out = ref.forward(w64, config, pixels, ids)
        reference[f"case.{name}.pixel_values"] = pixels
        for key in ("frame_embeds", "clip_frame_embeds", "video_embed", "vc_logits",
                    "label_text_embeds", "label_scores"):
            reference[f"case.{name}.{key}"] = out[key].float()
        reference["logit_scale_exp"] = out["logit_scale_exp"].float()  # exp of the float16 value
        ref_meta[f"case.{name}.config"] = json.dumps(config.to_json())
        ref_meta[f"case.{name}.weights"] = weights_file
        ref_meta[f"case.{name}.frames"] = str(frames)
        cases_json.append({"name": name, "frames": frames, "weights": weights_file,
                           "config": config.to_json(), "unusedTensors": unused,
                           "skippedTensors": skipped})

        # float32 evaluation of the same case, to show the float32-vs-float64 gap.
        out32 = ref.forward({n: t.float() for n, t in w64.items()}, config, pixels, ids)
        gap = max(float((out32[k].double() - out[k]).abs().max())
                  for k in ("frame_embeds", "video_embed", "vc_logits", "label_text_embeds"))
        cos = torch.nn.functional.cosine_similarity(out["frame_embeds"], out["clip_frame_embeds"], dim=1)
        summary.append((name, frames, len(w64), len(unused), len(skipped), gap,
                        float(out["frame_embeds"].norm(dim=1).mean()), float(cos.min()),
                        [round(float(x), 3) for x in out["label_scores"]]))
        if name == "clip_only":
            torch.testing.assert_close(out["frame_embeds"], out["clip_frame_embeds"], rtol=0, atol=0)
            crosscheck = hf_crosscheck(w64, config, pixels, ids, out)

    # The TED cases must differ from each other and from plain CLIP (adapters really act).
    ve = {c[0]: reference[f"case.{c[0]}.video_embed"] for c in CASES}
    assert not torch.allclose(reference["case.te_only.frame_embeds"], reference["case.td_only.frame_embeds"])

    write_safetensors(os.path.join(args.out, "reference.safetensors"),
                      {n: (t if t.dtype == torch.int64 else t.float()) for n, t in reference.items()},
                      ref_meta)
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"cases": cases_json}, f, indent=1)
        f.write("\n")

    # Independent check: the CLI on a stored case reproduces the stored outputs.
    again = ref.forward({n: t.double() for n, t in
                         ref.select_weights(load_file(os.path.join(args.out, "weights.safetensors")),
                                            CASES[1][2], strict=True).items()},
                        CASES[1][2], load_file(os.path.join(args.out, "reference.safetensors"))
                        ["case.preattn_premlp.pixel_values"], ids)
    torch.testing.assert_close(again["video_embed"].float(), reference["case.preattn_premlp.video_embed"],
                               rtol=0, atol=0)

    print(f"{'case':<15} {'T':>2} {'tensors':>7} {'unused':>6} {'skipped':>7} {'f32-f64 gap':>11} "
          f"{'|frame|':>7} {'cos(frame, clip frame)':>22}  label_scores")
    for name, frames, n, u, s, gap, norm, cos, scores in summary:
        print(f"{name:<15} {frames:>2} {n:>7} {u:>6} {s:>7} {gap:>11.2e} {norm:>7.3f} {cos:>22.4f}  {scores}")
    print("video_embed pairwise max |diff| vs clip_only: "
          + ", ".join(f"{k} {float((v - ve['clip_only']).abs().max()):.3f}" for k, v in ve.items()
                      if k != "clip_only"))
    print("TED-off case vs transformers CLIPModel (max abs diff):")
    for dtype, diffs in crosscheck.items():
        print(f"  transformers {dtype}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    total = directory_size(args.out)
    for f in sorted(os.listdir(args.out)):
        print(f"  {os.path.join(args.out, f)}: {os.path.getsize(os.path.join(args.out, f)):,} bytes")
    print(f"total {total:,} bytes (limit {SIZE_LIMIT_BYTES:,}); {time.perf_counter() - start:.1f} s")
    worst64 = max(crosscheck["float64 sdpa"].values())
    if worst64 > 1e-9:
        print(f"error: reference differs from transformers fp64 by {worst64:.2e}", file=sys.stderr)
        return 1
    if total >= SIZE_LIMIT_BYTES:
        print("error: fixture exceeds the size limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
