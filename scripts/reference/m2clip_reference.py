#!/usr/bin/env python3
"""Independent PyTorch reference of M²-CLIP inference, written from /work/shared/M2CLIP-SPEC.md.

It reads a state dict named as the authors' release (OpenAI CLIP names plus the adapter names of
spec §8), runs the video tower with TED-Adapters, the post-projection temporal adapter, the VC head
and the text tower with text adapters, and scores a label set. Every operation is written out by
hand (attention, LayerNorm, the depthwise convolutions as sums of shifted copies), so this file is
an oracle that shares no code with `nn.MultiheadAttention`, `transformers` or the authors' modules.

Use as a module:

    import m2clip_reference as ref
    config = ref.M2ClipConfig.load("config.json")
    weights = ref.load_weights("weights.safetensors", config)      # float32 (or float64)
    out = ref.forward(weights, config, pixel_values, label_ids)     # dict of tensors

or from the command line:

    python3 scripts/reference/m2clip_reference.py --weights W.safetensors --config C.json \\
        --pixels P.safetensors [--labels FILE] [--tokenizer DIR] --out OUT.safetensors

`--pixels` holds `pixel_values` F32/F16 (T, 3, H, W) (one clip) or (B, T, 3, H, W) (B clips),
already CLIP-normalised. `--labels` is a label set: `.txt` (one label per line), `.csv` (`id,name`,
as /work/shared/data/labels), or `.json` (a list of strings, or an object with `labels`, optional
`template`, optional `token_ids` — a list of id lists used as they are, without the tokenizer).
Without `token_ids` each label becomes `template.format(label=...)` ("A video of {label}") tokenised
by `transformers.CLIPTokenizer.from_pretrained(DIR)` (DIR holds vocab.json + merges.txt; default
Resources/CLIPVocabulary/clip-tokenizer), truncated to the context length with EOT kept last.

OUT receives (float32; leading B only when the pixels had one):
    frame_embeds       (B, T, P)  post-adapter per-frame embeddings (P = projection dim)
    clip_frame_embeds  (B, T, P)  ln_post(CLS) @ visual.proj, before the post adapter
    video_embed        (B, P)     mean over T of frame_embeds
    vc_logits          (B, C)     visual.adapter_fc(ln_post(mean_T CLS_last))
    label_text_embeds  (K, P)     text embeddings of the K prompts (with --labels)
    label_scores       (B, K)     softmax_k(exp(logit_scale) * cos(video_embed, w_k))
    label_token_ids    (K, 77)    int64, zero padded (with --labels)
    logit_scale_exp    (1)

Configuration (JSON; `M2ClipConfig`), every field required unless a default is given:

    format            "m2clip-config"        constant, identifies the file
    version           1                      constant
    vision.width      int    d   image-tower width (768 for B/16)
    vision.layers     int        image-tower blocks (12)
    vision.heads      int        attention heads (12); head dim = width / heads
    vision.patchSize  int    p   patch side (16); conv1 is (width, 3, p, p), bias-free
    vision.imageSize  int        input side (224); M = (imageSize / p)^2 patches, grid √M × √M
    text.width        int        text-tower width (512)
    text.layers       int        CLIP text blocks (12). State-dict blocks with index >= layers
                                 (the release's CMLM block 12) are ignored.
    text.heads        int        (8)
    text.vocabSize    int        token_embedding rows (49408)
    text.contextLength int       positional_embedding rows (77)
    text.sotTokenId   int        start-of-text id (49406); informational, ids are given
    text.eotTokenId   int        end-of-text id (49407); must be the highest id: pooling takes
                                 the first position of the highest id in each sequence
    projectionDim     int    P   joint embedding size (512): visual.proj (d, P), text_projection
                                 (text.width, P), both applied as x @ W
    mlpRatio          int        MLP hidden = mlpRatio * width (4), both towers
    layerNormEps      float      every CLIP LayerNorm (1e-5)
    activation        "quickGELU"  CLIP MLP activation x * sigmoid(1.702 x) (the only value)
    ted.positions     [str]      subset of ["preAttention", "preMLP"]: where a TED-Adapter sits in
                                 a visual block, in the residual stream before ln_1 / before ln_2;
                                 state-dict names adapter_pre_attn / adapter_pre_mlp
    ted.layers        [int]      visual blocks (0-based) that get an adapter at every position
                                 in ted.positions. Empty positions or layers: TED off.
    ted.width         int    r   bottleneck width (384)
    ted.te            bool       temporal-enhancement branch present (fc1, conv, fc2)
    ted.td            bool       temporal-difference branch present (offset_adapter.*);
                                 te and td cannot both be false while TED is on
    postAdapter.enabled bool     the post-projection temporal adapter visual.t_adapter exists
    postAdapter.width int        its bottleneck (256)
    textAdapter.layers [int]     text blocks (0-based, < text.layers) with text adapters
                                 (release K400: [11]; SSv2: 0..11; its block-12 adapters belong
                                 to CMLM)
    textAdapter.positions [str]  default ["preMLP"]: subset of ["preAttention", "preMLP"], where
                                 a text adapter sits in each of textAdapter.layers, in the residual
                                 stream before ln_1 / before ln_2 (names adapter_pre_attn /
                                 adapter_pre_mlp .textad_fc{1,2})
    textAdapter.width int        its bottleneck (384); activation is exact (erf) GELU
    classes           int    C   rows of visual.adapter_fc (400 for K400)
    promptTemplate    str        default "A video of {label}"
    cmlm              object     optional, training only (m2clip_training_reference.py): the CMLM
                                 block (text block index text.layers) and the MLM head.
      .adapterPositions [str]    text adapters inside the CMLM block (K400 ["preMLP"], SSv2 both)
      .words          [str]      MLM vocabulary; mlm_adapter.decoder row k predicts words[k]
    lossWeights       object     optional, training only; default {"contrastive": 1, "cmc": 1,
                                 "vc": 1, "mlm": 0.1}: total = (contrastive (KL_v2t + KL_t2v)/2
                                 + cmc CE_cmc)/2 + vc CE_vc + mlm CE_mlm

The state dict must hold exactly the tensors the config implies (`expected_shapes`), plus
`logit_scale` (log of the scale). Tensors the inference never uses are skipped: text blocks
>= text.layers (CMLM block and its adapter), `mlm_adapter.*`, and OpenAI's scalar entries
`input_resolution`, `context_length`, `vocab_size`. Anything else unexpected is an error (or
ignored with strict=False / --lenient, for a file holding more adapters than the config uses).

Token-grid convention (TD conv): patch token m (0-based, after CLS) is at row m // √M, column
m % √M — the row-major flatten of conv1's output, as in OpenAI CLIP. Conv weights are PyTorch
cross-correlations: the Conv1d tap k multiplies frame t + k - 1; the 3×3 tap (a, b) multiplies
grid cell (row + a - 1, col + b - 1); outside the clip / grid is zero.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_TOKENIZER_DIR = os.path.join(REPO_ROOT, "Resources", "CLIPVocabulary", "clip-tokenizer")

CONFIG_FORMAT = "m2clip-config"
CONFIG_VERSION = 1
POSITIONS = ("preAttention", "preMLP")
POSITION_PREFIX = {"preAttention": "adapter_pre_attn", "preMLP": "adapter_pre_mlp"}
DEFAULT_TEMPLATE = "A video of {label}"
# OpenAI checkpoints carry these scalars; they are not weights.
OPENAI_SCALARS = ("input_resolution", "context_length", "vocab_size")


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TEDConfig:
    positions: list = field(default_factory=lambda: ["preMLP"])
    layers: list = field(default_factory=list)
    width: int = 384
    te: bool = True
    td: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.positions) and bool(self.layers)


@dataclass
class PostAdapterConfig:
    enabled: bool = True
    width: int = 256


@dataclass
class TextAdapterConfig:
    layers: list = field(default_factory=list)
    width: int = 384
    positions: list = field(default_factory=lambda: ["preMLP"])


@dataclass
class CMLMConfig:
    """Training only: text adapters in the CMLM block and the MLM vocabulary (spec §4)."""
    adapter_positions: list = field(default_factory=lambda: ["preMLP"])
    words: list = field(default_factory=list)


@dataclass
class LossWeights:
    """Training only: total = (contrastive (KL_v2t + KL_t2v)/2 + cmc CMC)/2 + vc VC + mlm MLM."""
    contrastive: float = 1.0
    cmc: float = 1.0
    vc: float = 1.0
    mlm: float = 0.1


@dataclass
class M2ClipConfig:
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_patch_size: int
    image_size: int
    text_width: int
    text_layers: int
    text_heads: int
    vocab_size: int
    context_length: int
    sot_token_id: int
    eot_token_id: int
    projection_dim: int
    ted: TEDConfig
    post_adapter: PostAdapterConfig
    text_adapter: TextAdapterConfig
    classes: int
    mlp_ratio: int = 4
    layer_norm_eps: float = 1e-5
    activation: str = "quickGELU"
    prompt_template: str = DEFAULT_TEMPLATE
    cmlm: CMLMConfig = None  # training only; None: no CMLM block / MLM head
    loss_weights: LossWeights = None  # training only; None: LossWeights() (the paper's)

    @property
    def grid(self) -> int:
        return self.image_size // self.vision_patch_size

    @property
    def patches(self) -> int:
        return self.grid * self.grid

    def to_json(self) -> dict:
        d = {
            "format": CONFIG_FORMAT,
            "version": CONFIG_VERSION,
            "vision": {"width": self.vision_width, "layers": self.vision_layers,
                       "heads": self.vision_heads, "patchSize": self.vision_patch_size,
                       "imageSize": self.image_size},
            "text": {"width": self.text_width, "layers": self.text_layers, "heads": self.text_heads,
                     "vocabSize": self.vocab_size, "contextLength": self.context_length,
                     "sotTokenId": self.sot_token_id, "eotTokenId": self.eot_token_id},
            "projectionDim": self.projection_dim,
            "mlpRatio": self.mlp_ratio,
            "layerNormEps": self.layer_norm_eps,
            "activation": self.activation,
            "ted": {"positions": list(self.ted.positions), "layers": list(self.ted.layers),
                    "width": self.ted.width, "te": self.ted.te, "td": self.ted.td},
            "postAdapter": {"enabled": self.post_adapter.enabled, "width": self.post_adapter.width},
            "textAdapter": {"layers": list(self.text_adapter.layers),
                            "width": self.text_adapter.width,
                            "positions": list(self.text_adapter.positions)},
            "classes": self.classes,
            "promptTemplate": self.prompt_template,
        }
        if self.cmlm is not None:
            d["cmlm"] = {"adapterPositions": list(self.cmlm.adapter_positions),
                         "words": list(self.cmlm.words)}
        if self.loss_weights is not None:
            lw = self.loss_weights
            d["lossWeights"] = {"contrastive": lw.contrastive, "cmc": lw.cmc, "vc": lw.vc,
                                "mlm": lw.mlm}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "M2ClipConfig":
        if d.get("format") != CONFIG_FORMAT or d.get("version") != CONFIG_VERSION:
            raise ValueError(f"config: format/version {d.get('format')!r}/{d.get('version')!r}, "
                             f"expected {CONFIG_FORMAT!r}/{CONFIG_VERSION}")
        v, t = d["vision"], d["text"]
        ted, post, ta = d["ted"], d["postAdapter"], d["textAdapter"]
        cmlm, lw = d.get("cmlm"), d.get("lossWeights")
        config = cls(
            vision_width=v["width"], vision_layers=v["layers"], vision_heads=v["heads"],
            vision_patch_size=v["patchSize"], image_size=v["imageSize"],
            text_width=t["width"], text_layers=t["layers"], text_heads=t["heads"],
            vocab_size=t["vocabSize"], context_length=t["contextLength"],
            sot_token_id=t["sotTokenId"], eot_token_id=t["eotTokenId"],
            projection_dim=d["projectionDim"],
            ted=TEDConfig(positions=list(ted["positions"]), layers=list(ted["layers"]),
                          width=ted["width"], te=ted["te"], td=ted["td"]),
            post_adapter=PostAdapterConfig(enabled=post["enabled"], width=post["width"]),
            text_adapter=TextAdapterConfig(layers=list(ta["layers"]), width=ta["width"],
                                           positions=list(ta.get("positions", ["preMLP"]))),
            classes=d["classes"],
            mlp_ratio=d.get("mlpRatio", 4),
            layer_norm_eps=d.get("layerNormEps", 1e-5),
            activation=d.get("activation", "quickGELU"),
            prompt_template=d.get("promptTemplate", DEFAULT_TEMPLATE),
            cmlm=None if cmlm is None else CMLMConfig(
                adapter_positions=list(cmlm["adapterPositions"]), words=list(cmlm["words"])),
            loss_weights=None if lw is None else LossWeights(
                contrastive=float(lw.get("contrastive", 1.0)), cmc=float(lw.get("cmc", 1.0)),
                vc=float(lw.get("vc", 1.0)), mlm=float(lw.get("mlm", 0.1))),
        )
        config.validate()
        return config

    @classmethod
    def load(cls, path: str) -> "M2ClipConfig":
        with open(path) as f:
            return cls.from_json(json.load(f))

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")

    def validate(self) -> None:
        def need(ok, what):
            if not ok:
                raise ValueError(f"config: {what}")
        need(self.vision_width % self.vision_heads == 0, "vision.width not divisible by heads")
        need(self.text_width % self.text_heads == 0, "text.width not divisible by heads")
        need(self.image_size % self.vision_patch_size == 0, "imageSize not a multiple of patchSize")
        need(self.activation == "quickGELU", f"activation {self.activation!r} (only quickGELU)")
        need(all(p in POSITIONS for p in self.ted.positions), f"ted.positions {self.ted.positions}")
        need(len(set(self.ted.positions)) == len(self.ted.positions), "ted.positions repeats")
        need(all(0 <= i < self.vision_layers for i in self.ted.layers), "ted.layers out of range")
        need(len(set(self.ted.layers)) == len(self.ted.layers), "ted.layers repeats")
        need(not self.ted.enabled or self.ted.te or self.ted.td, "ted on with te and td off")
        need(all(0 <= i < self.text_layers for i in self.text_adapter.layers),
             "textAdapter.layers out of range (the CMLM block is not an inference layer)")
        need(len(set(self.text_adapter.layers)) == len(self.text_adapter.layers),
             "textAdapter.layers repeats")
        need(all(p in POSITIONS for p in self.text_adapter.positions),
             f"textAdapter.positions {self.text_adapter.positions}")
        need(len(set(self.text_adapter.positions)) == len(self.text_adapter.positions),
             "textAdapter.positions repeats")
        if self.cmlm is not None:
            need(all(p in POSITIONS for p in self.cmlm.adapter_positions),
                 f"cmlm.adapterPositions {self.cmlm.adapter_positions}")
            need(len(set(self.cmlm.adapter_positions)) == len(self.cmlm.adapter_positions),
                 "cmlm.adapterPositions repeats")
            need(len(self.cmlm.words) > 0, "cmlm.words is empty")
            need(self.projection_dim == self.text_width,
                 "cmlm needs projectionDim == text.width (text tokens attend to frame embeddings)")
        need(self.eot_token_id == self.vocab_size - 1, "eotTokenId must be the highest id")
        need(self.classes > 0, "classes must be positive")


# --------------------------------------------------------------------------------------------
# State-dict names and shapes (the one table of checkpoint names in this file)


def _block_shapes(prefix: str, width: int, mlp_ratio: int) -> dict:
    h = width * mlp_ratio
    return {
        f"{prefix}attn.in_proj_weight": (3 * width, width),
        f"{prefix}attn.in_proj_bias": (3 * width,),
        f"{prefix}attn.out_proj.weight": (width, width),
        f"{prefix}attn.out_proj.bias": (width,),
        f"{prefix}ln_1.weight": (width,), f"{prefix}ln_1.bias": (width,),
        f"{prefix}mlp.c_fc.weight": (h, width), f"{prefix}mlp.c_fc.bias": (h,),
        f"{prefix}mlp.c_proj.weight": (width, h), f"{prefix}mlp.c_proj.bias": (width,),
        f"{prefix}ln_2.weight": (width,), f"{prefix}ln_2.bias": (width,),
    }


def _linear(name: str, out_features: int, in_features: int) -> dict:
    return {f"{name}.weight": (out_features, in_features), f"{name}.bias": (out_features,)}


def ted_adapter_names(prefix: str, d: int, r: int, te: bool, td: bool) -> dict:
    """Tensors of one TED-Adapter at `prefix` (e.g. visual.transformer.resblocks.3.adapter_pre_mlp.)."""
    shapes = {}
    if te:
        shapes.update(_linear(f"{prefix}fc1", r, d))
        shapes.update({f"{prefix}conv.weight": (r, 1, 3), f"{prefix}conv.bias": (r,)})
        shapes.update(_linear(f"{prefix}fc2", d, r))
    if td:
        o = f"{prefix}offset_adapter."
        shapes.update(_linear(f"{o}fc1", r, d))
        shapes.update({f"{o}conv.weight": (r, 1, 1, 3, 3), f"{o}conv.bias": (r,)})
        shapes.update(_linear(f"{o}fc2", d, r))
    return shapes


def text_adapter_names(prefix: str, width: int, r: int) -> dict:
    """Tensors of one text adapter at `prefix` (e.g. transformer.resblocks.11.adapter_pre_mlp.)."""
    return {**_linear(f"{prefix}textad_fc1", r, width), **_linear(f"{prefix}textad_fc2", width, r)}


def expected_shapes(config: M2ClipConfig) -> dict:
    """Name -> shape of every tensor inference reads, for this config."""
    c = config
    d, m = c.vision_width, c.patches
    s = {
        "visual.conv1.weight": (d, 3, c.vision_patch_size, c.vision_patch_size),
        "visual.class_embedding": (d,),
        "visual.positional_embedding": (1 + m, d),
        "visual.ln_pre.weight": (d,), "visual.ln_pre.bias": (d,),
        "visual.ln_post.weight": (d,), "visual.ln_post.bias": (d,),
        "visual.proj": (d, c.projection_dim),
        "visual.adapter_fc.weight": (c.classes, d), "visual.adapter_fc.bias": (c.classes,),
        "token_embedding.weight": (c.vocab_size, c.text_width),
        "positional_embedding": (c.context_length, c.text_width),
        "ln_final.weight": (c.text_width,), "ln_final.bias": (c.text_width,),
        "text_projection": (c.text_width, c.projection_dim),
        "logit_scale": (),
    }
    for i in range(c.vision_layers):
        prefix = f"visual.transformer.resblocks.{i}."
        s.update(_block_shapes(prefix, d, c.mlp_ratio))
        if i in c.ted.layers:
            for p in c.ted.positions:
                s.update(ted_adapter_names(f"{prefix}{POSITION_PREFIX[p]}.", d, c.ted.width,
                                           c.ted.te, c.ted.td))
    for i in range(c.text_layers):
        prefix = f"transformer.resblocks.{i}."
        s.update(_block_shapes(prefix, c.text_width, c.mlp_ratio))
        if i in c.text_adapter.layers:
            for p in c.text_adapter.positions:
                s.update(text_adapter_names(f"{prefix}{POSITION_PREFIX[p]}.", c.text_width,
                                            c.text_adapter.width))
    if c.post_adapter.enabled:
        w, p = c.post_adapter.width, c.projection_dim
        s.update(_linear("visual.t_adapter.fc1", w, p))
        s.update({"visual.t_adapter.conv.weight": (w, 1, 3), "visual.t_adapter.conv.bias": (w,)})
        s.update(_linear("visual.t_adapter.fc2", p, w))
    return s


def is_skipped(name: str, config: M2ClipConfig) -> bool:
    """Tensors a release file may hold that inference never reads (CMLM block, MLM head)."""
    if name.startswith("mlm_adapter.") or name in OPENAI_SCALARS:
        return True
    if name.startswith("transformer.resblocks."):
        index = name.split(".")[2]
        return index.isdigit() and int(index) >= config.text_layers
    return False


def select_weights(state: dict, config: M2ClipConfig, strict: bool = True) -> dict:
    """The tensors `config` reads, checked by name and shape; raises on missing/mis-shaped ones.

    With strict, a tensor that is neither read nor skippable (`is_skipped`) is an error too.
    """
    shapes = expected_shapes(config)
    missing = [n for n in shapes if n not in state]
    if missing:
        raise KeyError(f"state dict lacks {len(missing)} tensors the config needs, e.g. {missing[:5]}")
    for name, shape in shapes.items():
        if tuple(state[name].shape) != tuple(shape) and not (shape == () and state[name].numel() == 1):
            raise ValueError(f"tensor {name} has shape {list(state[name].shape)}, expected {list(shape)}")
    if strict:
        extra = [n for n in state if n not in shapes and not is_skipped(n, config)]
        if extra:
            raise KeyError(f"state dict has {len(extra)} tensors the config does not use, "
                           f"e.g. {extra[:5]} (wrong config? use strict=False / --lenient)")
    return {n: state[n] for n in shapes}


def load_weights(path: str, config: M2ClipConfig, dtype=torch.float32, strict: bool = True) -> dict:
    """Read a safetensors state dict in the authors' names, widened to `dtype`."""
    from safetensors.torch import load_file

    state = load_file(path)
    selected = select_weights(state, config, strict=strict)
    return {n: t.to(dtype) for n, t in selected.items()}


# --------------------------------------------------------------------------------------------
# Building blocks, by hand


def layer_norm(x, weight, bias, eps):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def linear(x, w, name):
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def attention(x, w, prefix, heads, causal):
    """Multi-head self-attention of x (N, L, width), OpenAI packed in_proj (q, k, v order)."""
    n, length, width = x.shape
    head_dim = width // heads
    qkv = x @ w[f"{prefix}in_proj_weight"].T + w[f"{prefix}in_proj_bias"]  # (N, L, 3 width)
    q, k, v = qkv.split(width, dim=-1)
    q, k, v = (t.reshape(n, length, heads, head_dim).transpose(1, 2) for t in (q, k, v))  # (N, h, L, dh)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)  # (N, h, L, L)
    if causal:
        above = torch.ones(length, length, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(above, float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    probs = scores.exp()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    out = (probs @ v).transpose(1, 2).reshape(n, length, width)
    return out @ w[f"{prefix}out_proj.weight"].T + w[f"{prefix}out_proj.bias"]


def mlp(x, w, prefix):
    return linear(quick_gelu(linear(x, w, f"{prefix}c_fc")), w, f"{prefix}c_proj")


def temporal_dwconv(h, weight, bias):
    """Depthwise Conv1d over T, kernel 3, zero padding 1. h (B, T, ..., r); weight (r, 1, 3)."""
    k = weight[:, 0, :]  # (r, 3)
    previous = torch.zeros_like(h)
    previous[:, 1:] = h[:, :-1]  # frame t - 1, zero before the first frame
    following = torch.zeros_like(h)
    following[:, :-1] = h[:, 1:]  # frame t + 1, zero after the last frame
    return k[:, 0] * previous + k[:, 1] * h + k[:, 2] * following + bias


def spatial_dwconv(h, weight, bias, grid):
    """Depthwise 3×3 conv on each frame's grid, zero padding 1. h (B, T, M, r); weight (r,1,1,3,3)."""
    b, t, m, r = h.shape
    k = weight[:, 0, 0]  # (r, 3, 3)
    x = h.reshape(b, t, grid, grid, r)
    padded = torch.zeros(b, t, grid + 2, grid + 2, r, dtype=h.dtype)
    padded[:, :, 1:-1, 1:-1] = x
    out = torch.zeros_like(x) + bias
    for a in range(3):
        for c in range(3):
            out = out + k[:, a, c] * padded[:, :, a:a + grid, c:c + grid]
    return out.reshape(b, t, m, r)


def ted_adapter(z, w, prefix, config: M2ClipConfig):
    """Eq. (6)-(8): A(Z) = Z + Z_E + Z_D for Z (B, T, 1+M, d)."""
    out = z
    if config.ted.te:
        # Eq. (6) TE on every token, CLS included.
        h = linear(z, w, f"{prefix}fc1")  # (B, T, 1+M, r)
        h = temporal_dwconv(h, w[f"{prefix}conv.weight"], w[f"{prefix}conv.bias"])
        out = out + linear(h, w, f"{prefix}fc2")
    if config.ted.td:
        # Eq. (7) TD on patch tokens: D_t = z_t - z_{t-1}, D_1 = 0; CLS gets 0.
        o = f"{prefix}offset_adapter."
        patches = z[:, :, 1:]  # (B, T, M, d)
        diff = torch.zeros_like(patches)
        diff[:, 1:] = patches[:, 1:] - patches[:, :-1]
        h = linear(diff, w, f"{o}fc1")  # (B, T, M, r)
        h = spatial_dwconv(h, w[f"{o}conv.weight"], w[f"{o}conv.bias"], config.grid)
        z_d = linear(h, w, f"{o}fc2")  # (B, T, M, d)
        out = torch.cat([out[:, :, :1], out[:, :, 1:] + z_d], dim=2)
    return out


# --------------------------------------------------------------------------------------------
# Towers


def patch_embed(pixels, w, config: M2ClipConfig):
    """Bias-free patch projection as a matrix product. pixels (N, 3, H, W) -> (N, M, d)."""
    n = pixels.shape[0]
    p, g = config.vision_patch_size, config.grid
    patches = pixels.reshape(n, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(n, g * g, 3 * p * p)
    return patches @ w["visual.conv1.weight"].reshape(config.vision_width, -1).T


def vision_tower(pixel_values, w, config: M2ClipConfig):
    """pixel_values (B, T, 3, H, W) -> CLS tokens of the last block (B, T, d), before ln_post."""
    b, t = pixel_values.shape[:2]
    d, m = config.vision_width, config.patches
    x = patch_embed(pixel_values.reshape(b * t, *pixel_values.shape[2:]), w, config)  # (BT, M, d)
    cls = w["visual.class_embedding"].expand(b * t, 1, d)
    x = torch.cat([cls, x], dim=1) + w["visual.positional_embedding"]  # Eq. (1)
    x = layer_norm(x, w["visual.ln_pre.weight"], w["visual.ln_pre.bias"], config.layer_norm_eps)
    eps = config.layer_norm_eps
    for i in range(config.vision_layers):
        prefix = f"visual.transformer.resblocks.{i}."
        adapted = i in config.ted.layers
        if adapted and "preAttention" in config.ted.positions:
            x = ted_adapter(x.reshape(b, t, 1 + m, d), w, f"{prefix}adapter_pre_attn.", config)
            x = x.reshape(b * t, 1 + m, d)
        x = x + attention(layer_norm(x, w[f"{prefix}ln_1.weight"], w[f"{prefix}ln_1.bias"], eps),
                          w, f"{prefix}attn.", config.vision_heads, causal=False)
        if adapted and "preMLP" in config.ted.positions:
            x = ted_adapter(x.reshape(b, t, 1 + m, d), w, f"{prefix}adapter_pre_mlp.", config)
            x = x.reshape(b * t, 1 + m, d)
        x = x + mlp(layer_norm(x, w[f"{prefix}ln_2.weight"], w[f"{prefix}ln_2.bias"], eps),
                    w, f"{prefix}mlp.")
    return x[:, 0].reshape(b, t, d)


def text_adapter(x, w, prefix):
    """Eq. (9): z + fc2(GELU(fc1(z))), exact GELU."""
    return x + linear(gelu_erf(linear(x, w, f"{prefix}textad_fc1")), w, f"{prefix}textad_fc2")


def text_stream(token_ids, w, config: M2ClipConfig):
    """token_ids (K, L) int64 -> the residual stream after the last CLIP text block (K, L, width),
    before ln_final (the CMLM block's input)."""
    k, length = token_ids.shape
    if length > config.context_length:
        raise ValueError(f"token sequences of length {length} exceed context {config.context_length}")
    if int(token_ids.max()) >= config.vocab_size or int(token_ids.min()) < 0:
        raise ValueError("token id out of the vocabulary")
    eps = config.layer_norm_eps
    x = w["token_embedding.weight"][token_ids] + w["positional_embedding"][:length]  # Eq. (4)
    positions = config.text_adapter.positions
    for i in range(config.text_layers):
        prefix = f"transformer.resblocks.{i}."
        adapted = i in config.text_adapter.layers
        if adapted and "preAttention" in positions:
            x = text_adapter(x, w, f"{prefix}adapter_pre_attn.")  # Eq. (9) before ln_1
        x = x + attention(layer_norm(x, w[f"{prefix}ln_1.weight"], w[f"{prefix}ln_1.bias"], eps),
                          w, f"{prefix}attn.", config.text_heads, causal=True)
        if adapted and "preMLP" in positions:
            x = text_adapter(x, w, f"{prefix}adapter_pre_mlp.")  # Eq. (9) before the FFN
        x = x + mlp(layer_norm(x, w[f"{prefix}ln_2.weight"], w[f"{prefix}ln_2.bias"], eps),
                    w, f"{prefix}mlp.")
    return x


def pool_text(stream, token_ids, w, config: M2ClipConfig):
    """ln_final at the first position of the highest id, @ text_projection. (K, L, width) -> (K, P)."""
    eot = token_ids.argmax(dim=-1)  # first position of the highest id
    x = stream[torch.arange(len(token_ids)), eot]
    x = layer_norm(x, w["ln_final.weight"], w["ln_final.bias"], config.layer_norm_eps)
    return x @ w["text_projection"]


def text_tower(token_ids, w, config: M2ClipConfig):
    """token_ids (K, L) int64, L <= context length, zero padded after EOT -> (K, P).

    Padding after EOT does not change the result (causal mask), so any L from the longest
    sequence up to the context length gives the same embeddings.
    """
    return pool_text(text_stream(token_ids, w, config), token_ids, w, config)


def post_adapter(frames, w):
    """x + fc2(DWConv1d_T(fc1(x))) on per-frame embeddings (B, T, P)."""
    h = linear(frames, w, "visual.t_adapter.fc1")
    h = temporal_dwconv(h, w["visual.t_adapter.conv.weight"], w["visual.t_adapter.conv.bias"])
    return frames + linear(h, w, "visual.t_adapter.fc2")


def encode_video(pixel_values, w, config: M2ClipConfig) -> dict:
    """pixel_values (B, T, 3, H, W) -> frame_embeds, clip_frame_embeds, video_embed, vc_logits."""
    expected = (3, config.image_size, config.image_size)
    if pixel_values.dim() != 5 or tuple(pixel_values.shape[2:]) != expected:
        raise ValueError(f"pixel_values {tuple(pixel_values.shape)}, expected (B, T, {expected})")
    eps = config.layer_norm_eps
    cls_last = vision_tower(pixel_values, w, config)  # (B, T, d)
    ln = lambda x: layer_norm(x, w["visual.ln_post.weight"], w["visual.ln_post.bias"], eps)
    clip_frames = ln(cls_last) @ w["visual.proj"]  # (B, T, P)
    frames = post_adapter(clip_frames, w) if config.post_adapter.enabled else clip_frames
    video = frames.mean(dim=1)  # Eq. (3)
    vc_logits = linear(ln(cls_last.mean(dim=1)), w, "visual.adapter_fc")  # (B, C)
    return {"frame_embeds": frames, "clip_frame_embeds": clip_frames, "video_embed": video,
            "vc_logits": vc_logits}


def label_scores(video_embed, text_embeds, logit_scale):
    """Eq. (11): softmax over labels of exp(logit_scale) * cos(v, w_k). (B, P), (K, P) -> (B, K)."""
    v = video_embed / video_embed.norm(dim=-1, keepdim=True)
    t = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    return torch.softmax(logit_scale.exp() * v @ t.T, dim=-1)


def pad_token_ids(id_lists, context_length: int) -> torch.Tensor:
    """List of id lists -> (K, context_length) int64, zero padded (OpenAI's layout)."""
    out = torch.zeros(len(id_lists), context_length, dtype=torch.int64)
    for i, ids in enumerate(id_lists):
        if len(ids) > context_length:
            raise ValueError(f"label {i}: {len(ids)} tokens exceed context {context_length}")
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return out


@torch.no_grad()
def encode_labels(token_ids, w, config: M2ClipConfig, chunk: int = 64) -> torch.Tensor:
    """(K, L) ids -> (K, P), evaluated only up to the longest sequence (see text_tower)."""
    if len(token_ids) == 0:
        return torch.zeros(0, config.projection_dim, dtype=w["text_projection"].dtype)
    trimmed = token_ids[:, :int(token_ids.argmax(dim=-1).max()) + 1]  # through the last EOT
    parts = [text_tower(trimmed[s:s + chunk], w, config) for s in range(0, len(trimmed), chunk)]
    return torch.cat(parts)


@torch.no_grad()
def forward(w: dict, config: M2ClipConfig, pixel_values, label_token_ids=None) -> dict:
    """Every inference output. pixel_values (T, 3, H, W) or (B, T, 3, H, W); ids (K, L) or None.

    Outputs keep the leading B only when the input had it (see the module docstring).
    """
    dtype = w["visual.proj"].dtype
    single = pixel_values.dim() == 4
    pixels = (pixel_values[None] if single else pixel_values).to(dtype)
    out = encode_video(pixels, w, config)
    out["logit_scale_exp"] = w["logit_scale"].reshape(1).exp()
    if label_token_ids is not None:
        text = encode_labels(label_token_ids, w, config)
        out["label_text_embeds"] = text
        out["label_scores"] = label_scores(out["video_embed"], text, w["logit_scale"].reshape(()))
        out["label_token_ids"] = label_token_ids
    if single:
        for name in ("frame_embeds", "clip_frame_embeds", "video_embed", "vc_logits", "label_scores"):
            if name in out:
                out[name] = out[name][0]
    return out


# --------------------------------------------------------------------------------------------
# Labels and tokenisation


def read_labels(path: str):
    """(labels, template or None, token_id lists or None) from a .txt, .csv or .json label file."""
    if path.endswith(".json"):
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, list):
            return [str(x) for x in data], None, None
        return list(data["labels"]), data.get("template"), data.get("token_ids")
    if path.endswith(".csv"):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return [r["name"] for r in rows], None, None
    with open(path) as f:
        return [line.strip() for line in f if line.strip()], None, None


def tokenize_prompts(labels, template: str, tokenizer_dir: str, context_length: int):
    """Token id lists of template.format(label=...) by CLIPTokenizer (EOT kept last)."""
    from transformers import CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    return [tokenizer(template.format(label=label), truncation=True,
                      max_length=context_length)["input_ids"] for label in labels]


# --------------------------------------------------------------------------------------------
# Hugging Face CLIPModel names (used only to cross-check the CLIP part against transformers)


def to_hf_clip(w: dict, config: M2ClipConfig) -> dict:
    """The CLIP tensors of an OpenAI-named state dict, renamed to transformers' CLIPModel."""
    hf = {
        "vision_model.embeddings.patch_embedding.weight": w["visual.conv1.weight"],
        "vision_model.embeddings.class_embedding": w["visual.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": w["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": w["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": w["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": w["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": w["visual.ln_post.bias"],
        "visual_projection.weight": w["visual.proj"].T,
        "text_model.embeddings.token_embedding.weight": w["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": w["positional_embedding"],
        "text_model.final_layer_norm.weight": w["ln_final.weight"],
        "text_model.final_layer_norm.bias": w["ln_final.bias"],
        "text_projection.weight": w["text_projection"].T,
        "logit_scale": w["logit_scale"].reshape(()),
    }
    for tower, src, layers in (("vision_model", "visual.transformer", config.vision_layers),
                               ("text_model", "transformer", config.text_layers)):
        for i in range(layers):
            s, d = f"{src}.resblocks.{i}.", f"{tower}.encoder.layers.{i}."
            q, k, v = w[f"{s}attn.in_proj_weight"].chunk(3)
            qb, kb, vb = w[f"{s}attn.in_proj_bias"].chunk(3)
            hf.update({
                f"{d}self_attn.q_proj.weight": q, f"{d}self_attn.q_proj.bias": qb,
                f"{d}self_attn.k_proj.weight": k, f"{d}self_attn.k_proj.bias": kb,
                f"{d}self_attn.v_proj.weight": v, f"{d}self_attn.v_proj.bias": vb,
                f"{d}self_attn.out_proj.weight": w[f"{s}attn.out_proj.weight"],
                f"{d}self_attn.out_proj.bias": w[f"{s}attn.out_proj.bias"],
                f"{d}layer_norm1.weight": w[f"{s}ln_1.weight"], f"{d}layer_norm1.bias": w[f"{s}ln_1.bias"],
                f"{d}layer_norm2.weight": w[f"{s}ln_2.weight"], f"{d}layer_norm2.bias": w[f"{s}ln_2.bias"],
                f"{d}mlp.fc1.weight": w[f"{s}mlp.c_fc.weight"], f"{d}mlp.fc1.bias": w[f"{s}mlp.c_fc.bias"],
                f"{d}mlp.fc2.weight": w[f"{s}mlp.c_proj.weight"], f"{d}mlp.fc2.bias": w[f"{s}mlp.c_proj.bias"],
            })
    return {n: t.contiguous() for n, t in hf.items()}


def hf_clip_model(w: dict, config: M2ClipConfig, dtype=torch.float32, attention="eager"):
    """A transformers CLIPModel (eval) holding the CLIP part of `w`.

    transformers' eager attention takes its softmax in float32 even for a float64 model; use
    attention="sdpa" for a float64 comparison.
    """
    from transformers import CLIPConfig, CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    c = config
    hf_config = CLIPConfig(
        text_config=dict(vocab_size=c.vocab_size, hidden_size=c.text_width,
                         intermediate_size=c.mlp_ratio * c.text_width,
                         num_attention_heads=c.text_heads, num_hidden_layers=c.text_layers,
                         max_position_embeddings=c.context_length, hidden_act="quick_gelu",
                         layer_norm_eps=c.layer_norm_eps, bos_token_id=c.sot_token_id,
                         eos_token_id=c.eot_token_id, pad_token_id=0,
                         projection_dim=c.projection_dim),
        vision_config=dict(hidden_size=c.vision_width, intermediate_size=c.mlp_ratio * c.vision_width,
                           num_attention_heads=c.vision_heads, num_hidden_layers=c.vision_layers,
                           image_size=c.image_size, patch_size=c.vision_patch_size, num_channels=3,
                           hidden_act="quick_gelu", layer_norm_eps=c.layer_norm_eps,
                           projection_dim=c.projection_dim),
        projection_dim=c.projection_dim,
    )
    hf_config._attn_implementation = attention
    model = CLIPModel(hf_config).eval()
    result = model.load_state_dict(to_hf_clip(w, config), strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(f"HF CLIPModel load: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(dtype)


# --------------------------------------------------------------------------------------------
# CLI


def _load_pixels(path: str) -> torch.Tensor:
    from safetensors.torch import load_file

    tensors = load_file(path)
    if "pixel_values" in tensors:
        return tensors["pixel_values"]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise KeyError(f"{path}: no pixel_values tensor (has {sorted(tensors)})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="M²-CLIP reference inference (PyTorch, by hand).")
    parser.add_argument("--weights", required=True, help="safetensors in the authors' names")
    parser.add_argument("--config", required=True, help="m2clip-config JSON (see module docstring)")
    parser.add_argument("--pixels", required=True, help="safetensors with pixel_values (T|B,T, 3, H, W)")
    parser.add_argument("--labels", help="label set: .txt / .csv / .json (may carry token_ids)")
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER_DIR, help="dir with vocab.json, merges.txt")
    parser.add_argument("--template", help="prompt template (default: the config's promptTemplate)")
    parser.add_argument("--out", required=True, help="output safetensors")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="compute precision (outputs are stored as float32)")
    parser.add_argument("--lenient", action="store_true",
                        help="ignore tensors the config does not use instead of failing")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = M2ClipConfig.load(args.config)
    dtype = getattr(torch, args.dtype)
    w = load_weights(args.weights, config, dtype=dtype, strict=not args.lenient)
    pixels = _load_pixels(args.pixels)
    ids = None
    if args.labels:
        labels, template, token_ids = read_labels(args.labels)
        if token_ids is None:
            template = args.template or template or config.prompt_template
            token_ids = tokenize_prompts(labels, template, args.tokenizer, config.context_length)
        ids = pad_token_ids(token_ids, config.context_length)
    out = forward(w, config, pixels, ids)
    tensors = {n: (t.contiguous() if t.dtype == torch.int64 else t.float().contiguous())
               for n, t in out.items()}
    save_file(tensors, args.out, metadata={"producer": "scripts/reference/m2clip_reference.py",
                                           "config": json.dumps(config.to_json())})
    elapsed = time.perf_counter() - start
    for n, t in tensors.items():
        print(f"{n:<18} {str(tuple(t.shape)):<16} {t.dtype}")
    print(f"wrote {args.out} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
