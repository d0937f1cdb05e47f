#!/usr/bin/env python3
"""Write Tests/Fixtures/m2clip-train-tiny/: a tiny random M²-CLIP with every training part, batches,
and the losses and gradients PyTorch autograd computes for them (m2clip_training_reference.py).

Model (the dims of make_m2clip_fixture.py, except projection 32 = text width, which the CMLM
block needs): vision width 32, 2 blocks, 4 heads, patch 8, image 32; text width 32, 2 blocks,
4 heads, vocabulary 1000 (SOT 998, EOT 999), context 77; TED width 16, post adapter 12, text
adapter 16; C = 5 classes (make_m2clip_fixture.LABELS and its made-up token ids); CMLM block
transformer.resblocks.2.* (a copy of block 1) and a 20-word MLM head. Every weight random and
non-zero (random_m2clip.py, adapter gain 0.3), stored as float16; the reference runs in float64
from the float16 values, so an fp32 engine matches to float32 accuracy.

Files:
    weights.safetensors      F16, the superset: TED before attention and before the FFN of visual
                             blocks 0 and 1, text adapters before attention and the FFN of text
                             blocks 0 and 1 and of the CMLM block, post adapter, VC head, MLM head
    cases.json               {"labels": [5], "classTokenIDs": [5 id lists], "cases": [{name,
                             frames, config (full m2clip-config with cmlm and lossWeights),
                             unusedTensors (drop before a strict load), losses {name: value},
                             batch (file name)}]}
    batch-NAME.safetensors   the case's batch as `m2clip train grad` reads it: pixel_values F32
                             (3, T, 3, 32, 32), labels I64 (3) = [0, 2, 0] (two clips share a
                             label: KL targets with off-diagonal mass), input_ids I64 (3, 77)
                             (each clip's class prompt with one label token replaced by the
                             made-up mask id 5), mlm_labels I64 (3, 77) where the case has them
    gradients.safetensors    F32 `NAME/<release name>`: the gradient of the case's total loss for
                             every trainable tensor of its config

Cases:
    k400     T = 3  TED preMLP (TE + TD), text adapter preMLP in block 1, CMLM adapter preMLP;
                    the paper's loss weights
    ssv2     T = 3  TED preAttention + preMLP, text adapters at both positions of blocks 0 and 1
                    and in the CMLM block; loss weights contrastive 1, cmc 0.5, vc 2, mlm 1
    te_only  T = 2  TED preAttention in block 1, TE only; text adapter preAttention in block 1;
                    CMLM block without adapters; no mlm_labels (no MLM term: its head gets zeros)

Run from the repository root (CPU, a few seconds):

    python3 scripts/reference/make_training_fixture.py [--out Tests/Fixtures/m2clip-train-tiny] [--seed 0]
"""

import argparse
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import m2clip_reference as ref  # noqa: E402
import m2clip_training_reference as tr  # noqa: E402
import make_m2clip_fixture as tiny  # noqa: E402
import random_m2clip  # noqa: E402

SIZE_LIMIT_BYTES = 900_000
MASK_ID = 5
CLIPS_LABELS = [0, 2, 0]
WORDS = [f"word{i}" for i in range(20)]

BASE = copy.deepcopy(tiny.BASE)
BASE.projection_dim = 32


def variant(ted_positions, ted_layers, te, td, text_layers, text_positions, cmlm_positions, weights=None):
    c = copy.deepcopy(BASE)
    c.ted = ref.TEDConfig(positions=list(ted_positions), layers=list(ted_layers), width=BASE.ted.width, te=te, td=td)
    c.text_adapter = ref.TextAdapterConfig(layers=list(text_layers), width=BASE.text_adapter.width,
                                           positions=list(text_positions))
    c.cmlm = ref.CMLMConfig(adapter_positions=list(cmlm_positions), words=list(WORDS))
    c.loss_weights = weights
    c.validate()
    return c


BOTH = ("preAttention", "preMLP")
# name, frames, config, with mlm_labels
CASES = [
    ("k400", 3, variant(["preMLP"], [0, 1], True, True, [1], ["preMLP"], ["preMLP"]), True),
    ("ssv2", 3, variant(BOTH, [0, 1], True, True, [0, 1], BOTH, BOTH,
                        ref.LossWeights(contrastive=1.0, cmc=0.5, vc=2.0, mlm=1.0)), True),
    ("te_only", 2, variant(["preAttention"], [1], True, False, [1], ["preAttention"], []), False),
]
SUPERSET = variant(BOTH, [0, 1], True, True, [0, 1], BOTH, BOTH)


def make_batch(case_index: int, frames: int, class_ids, with_mlm: bool, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed * 100 + case_index)
    pixels = torch.stack([random_m2clip.make_clip(frames, BASE.image_size, seed * 100 + case_index * 10 + i)
                          for i in range(len(CLIPS_LABELS))])
    ids = torch.zeros(len(CLIPS_LABELS), BASE.context_length, dtype=torch.int64)
    mlm = torch.full_like(ids, tr.IGNORE_INDEX)
    for i, label in enumerate(CLIPS_LABELS):
        prompt = list(class_ids[label])
        label_start = 1 + len(tiny.PROMPT_PREFIX)
        position = int(torch.randint(label_start, len(prompt) - 1, (1,), generator=g))
        mlm[i, position] = int(torch.randint(0, len(WORDS), (1,), generator=g))
        prompt[position] = MASK_ID
        ids[i, :len(prompt)] = torch.tensor(prompt)
    batch = {"pixel_values": pixels.float().contiguous(), "labels": torch.tensor(CLIPS_LABELS, dtype=torch.int64),
             "input_ids": ids}
    if with_mlm:
        batch["mlm_labels"] = mlm
    return batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ref.REPO_ROOT, "Tests", "Fixtures", "m2clip-train-tiny"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    shapes = tr.training_shapes(SUPERSET)
    full = random_m2clip.random_weights(SUPERSET, args.seed, adapter_gain=0.3, logit_scale=tiny.LOGIT_SCALE,
                                        mlm_vocab=len(WORDS), shapes=shapes)
    full = {n: t.half() for n, t in full.items()}
    tiny.write_safetensors(os.path.join(args.out, "weights.safetensors"), full,
                           {"producer": "scripts/reference/make_training_fixture.py"})

    class_ids = tiny.label_token_ids(args.seed)
    padded = ref.pad_token_ids(class_ids, BASE.context_length)
    gradients, cases = {}, []
    for index, (name, frames, config, with_mlm) in enumerate(CASES):
        batch = make_batch(index, frames, class_ids, with_mlm, args.seed)
        tiny.write_safetensors(os.path.join(args.out, f"batch-{name}.safetensors"), batch)
        w = tr.prepare_weights({n: t.float() for n, t in full.items()}, config, dtype=torch.float64, strict=False)
        losses, grads = tr.training_gradients(w, config, {**batch, "class_token_ids": padded})
        assert all(v == v for v in losses.values()), f"{name}: non-finite loss {losses}"
        if with_mlm:
            assert losses["mlm"] > 0, f"{name}: no MLM term"
        for tensor, g in grads.items():
            gradients[f"{name}/{tensor}"] = g.float().contiguous()
        used = set(tr.training_shapes(config))
        cases.append({"name": name, "frames": frames, "config": config.to_json(),
                      "unusedTensors": sorted(n for n in full if n not in used), "losses": losses,
                      "batch": f"batch-{name}.safetensors"})
        print(f"{name}: T={frames}, {len(grads)} gradients, losses "
              + ", ".join(f"{k} {v:.5f}" for k, v in losses.items()))
    tiny.write_safetensors(os.path.join(args.out, "gradients.safetensors"), gradients,
                           {"producer": "scripts/reference/make_training_fixture.py", "compute_dtype": "float64"})
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"labels": [label for label, _ in tiny.LABELS], "classTokenIDs": class_ids, "cases": cases},
                  f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"wrote {args.out}: {total / 1e3:.0f} kB")
    assert total <= SIZE_LIMIT_BYTES, f"fixture is {total} bytes, over {SIZE_LIMIT_BYTES}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
