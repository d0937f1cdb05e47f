#!/usr/bin/env python3
"""Write Tests/Fixtures/m2clip-train-tiny/adamw.safetensors: what torch.optim.AdamW does to the
trainable parameters of the fixture's ssv2 case (every kind: Linear weights and biases, TE/TD
depthwise convs, LayerNorm, text adapters) over a few steps.

Parameters start at weights.safetensors (f16, widened); the gradient of step k is the ssv2
case's autograd gradient (gradients.safetensors, `ssv2/<name>`) times COEFFICIENTS[k], the
learning rate LEARNING_RATES[k]. Groups as spec §6: weight decay 0.01 on tensors of two or more
dimensions, none on biases and LayerNorm (1-D); text adapters (`textad_`) at half the rate.
betas (0.9, 0.999), eps 1e-8 (PyTorch's defaults). Stored: `final/<name>` F32 (release layout).

    python3 scripts/reference/make_optimizer_fixture.py [--dir Tests/Fixtures/m2clip-train-tiny]
"""

import argparse
import os

import torch
from safetensors.torch import load_file, save_file

COEFFICIENTS = [1.0, -0.5, 2.0, 0.25]
LEARNING_RATES = [1e-3, 4e-3, 2e-3, 5e-4]
WEIGHT_DECAY = 0.01


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="Tests/Fixtures/m2clip-train-tiny")
    args = parser.parse_args()
    weights = load_file(os.path.join(args.dir, "weights.safetensors"))
    grads = {k[len("ssv2/"):]: v for k, v in load_file(os.path.join(args.dir, "gradients.safetensors")).items()
             if k.startswith("ssv2/")}
    params = {n: torch.nn.Parameter(weights[n].float().clone()) for n in sorted(grads)}
    groups = {}
    for n, p in params.items():
        key = (p.dim() > 1, "textad_" in n)
        groups.setdefault(key, []).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": ps, "weight_decay": WEIGHT_DECAY if decays else 0.0, "scale": 0.5 if text else 1.0}
         for (decays, text), ps in groups.items()],
        lr=LEARNING_RATES[0], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    for coefficient, lr in zip(COEFFICIENTS, LEARNING_RATES):
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        for n, p in params.items():
            p.grad = grads[n].float() * coefficient
        optimizer.step()
    out = os.path.join(args.dir, "adamw.safetensors")
    save_file({f"final/{n}": p.detach().contiguous() for n, p in params.items()}, out,
              metadata={"coefficients": ",".join(map(str, COEFFICIENTS)),
                        "learning_rates": ",".join(map(str, LEARNING_RATES))})
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {len(params)} tensors)")


if __name__ == "__main__":
    main()
