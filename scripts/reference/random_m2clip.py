"""Seeded random M²-CLIP state dicts in the authors' release names, and video-like test clips.

Used by make_m2clip_fixture.py (tiny model) and parity_m2clip.py (full ViT-B/16); not a CLI.

Weight recipe: nothing is zero and no LayerNorm is the identity, so a wrong bias, affine, conv tap
or branch cannot hide; scales keep the residual stream and the adapters' share of it realistic.
    linear / patch-conv weights   N(0, 1/fan_in); rows of q in in_proj_weight gain 2 (clearly
                                  non-uniform attention); visual.proj, text_projection gain 0.5
    linear and conv biases        N(0, 0.1^2)
    LayerNorm weight / bias       U(0.8, 1.2) / N(0, 0.1^2)
    class / positional embedding  N(0, 1/width) (OpenAI's init scale); text positional N(0, 0.01^2)
    token embedding               N(0, 0.02^2) (OpenAI's init)
    adapters (TED, post, text)    fc1 N(0, 1/in), conv taps N(0, 1/taps), fc2 N(0, gain^2/r),
                                  gain `adapter_gain` (each adds ~gain x its input's size)
    VC head                       N(0, 1/width), bias N(0, 0.1^2)
    logit_scale                   `logit_scale` (log; log(100) is OpenAI's trained value)
A release-like file also gets the CMLM text block (index text.layers, an exact copy of the last
CLIP text block), a text adapter in it, and the mlm_adapter head with `mlm_vocab` words — all of
which inference must skip.
"""

import math

import torch

import m2clip_reference as ref


class _Draw:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, shape, std):
        return torch.randn(shape, generator=self.g) * std

    def uniform(self, shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=self.g)


def random_weights(config: ref.M2ClipConfig, seed: int, adapter_gain: float = 0.3,
                   logit_scale: float = math.log(100.0), release_extras: bool = True,
                   mlm_vocab: int = 20, shapes: dict = None) -> dict:
    """A float32 state dict with every tensor `expected_shapes(config)` names (plus the CMLM
    block, its adapter and mlm_adapter.* with release_extras), or exactly the tensors `shapes`
    names (e.g. m2clip_training_reference.training_shapes, for any CMLM adapter layout)."""
    draw = _Draw(seed)
    last = f"transformer.resblocks.{config.text_layers - 1}."
    cmlm = f"transformer.resblocks.{config.text_layers}."
    if shapes is not None:
        shapes = dict(shapes)
    else:
        shapes = ref.expected_shapes(config)
    if release_extras and not any(n.startswith(cmlm) for n in shapes):
        for name, shape in list(shapes.items()):
            if name.startswith(last) and ".adapter_pre_" not in name:
                shapes[cmlm + name[len(last):]] = shape
        tw, ta = config.text_width, config.text_adapter.width
        shapes.update(ref._linear(f"{cmlm}adapter_pre_mlp.textad_fc1", ta, tw))
        shapes.update(ref._linear(f"{cmlm}adapter_pre_mlp.textad_fc2", tw, ta))
        shapes.update(ref._linear("mlm_adapter.transform.dense", tw, tw))
        shapes.update({"mlm_adapter.transform.LayerNorm.weight": (tw,),
                       "mlm_adapter.transform.LayerNorm.bias": (tw,),
                       "mlm_adapter.decoder.weight": (mlm_vocab, tw), "mlm_adapter.bias": (mlm_vocab,)})

    w = {}
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        owner = name.rsplit(".", 2)[-2] if "." in name else ""
        adapter = any(k in name for k in (".adapter_pre_attn.", ".adapter_pre_mlp.", "t_adapter."))
        if name == "logit_scale":
            t = torch.tensor(logit_scale)
        elif owner.startswith("ln_") or owner == "LayerNorm":
            t = draw.uniform(shape, 0.8, 1.2) if leaf == "weight" else draw.normal(shape, 0.1)
        elif name in ("visual.class_embedding", "visual.positional_embedding"):
            t = draw.normal(shape, 1.0 / math.sqrt(config.vision_width))
        elif name == "positional_embedding":
            t = draw.normal(shape, 0.01)
        elif name == "token_embedding.weight":
            t = draw.normal(shape, 0.02)
        elif name in ("visual.proj", "text_projection"):  # (in, out)
            t = draw.normal(shape, 0.5 / math.sqrt(shape[0]))
        elif name == "visual.conv1.weight":
            t = draw.normal(shape, 1.0 / math.sqrt(shape[1] * shape[2] * shape[3]))
        elif leaf in ("bias", "in_proj_bias"):
            t = draw.normal(shape, 0.1)
        elif adapter and owner == "conv":  # depthwise taps: (r, 1, 3) or (r, 1, 1, 3, 3)
            taps = shape[-1] * (shape[-2] if len(shape) == 5 else 1)
            t = draw.normal(shape, 1.0 / math.sqrt(taps))
        elif adapter and owner in ("fc2", "textad_fc2"):
            t = draw.normal(shape, adapter_gain / math.sqrt(shape[1]))
        elif leaf == "in_proj_weight":
            t = draw.normal(shape, 1.0 / math.sqrt(shape[1]))
            width = shape[1]
            t[:width] *= 2.0  # q rows
        elif len(shape) == 2:  # every other (out, in) Linear weight
            t = draw.normal(shape, 1.0 / math.sqrt(shape[1]))
        else:
            raise AssertionError(f"no recipe for {name} {shape}")
        t = t.float()
        if name != "logit_scale":  # an exact 0.0 from randn is rare but does occur in 100M draws
            t = torch.where(t == 0, torch.full_like(t, 1e-4), t)
        w[name] = t.contiguous()

    if any(n.startswith(cmlm) for n in shapes):  # the CMLM block starts as a copy of the last text block
        for name in shapes:
            if name.startswith(cmlm) and ".adapter_pre_" not in name:
                w[name] = w[last + name[len(cmlm):]].clone()
    for name, t in w.items():
        assert name == "logit_scale" or bool((t != 0).all()), f"{name} has zeros"
    return w


def make_clip(frames: int, size: int, seed: int, motion: float = 0.35) -> torch.Tensor:
    """(frames, 3, size, size) CLIP-normalised video-like frames: a smooth random image that
    drifts from frame to frame (so temporal differences are real but not noise), plus fine noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=g).repeat(frames, 1, 1, 1)
    steps = motion * torch.randn(frames, 3, 6, 6, generator=g)
    steps[0] = 0
    coarse = (coarse + steps.cumsum(dim=0)).clamp(0.0, 1.0)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                             align_corners=False)
    images = (images + 0.05 * torch.randn(images.shape, generator=g)).clamp(0.0, 1.0)
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
    return ((images - mean) / std).contiguous()
