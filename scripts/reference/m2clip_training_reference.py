#!/usr/bin/env python3
"""Independent PyTorch reference of one M²-CLIP TRAINING step's losses and gradients (spec §4, §9).

Written from /work/shared/M2CLIP-SPEC.md on top of m2clip_reference.py (the inference reference,
whose towers it reuses unchanged): the CMLM cross-attention block and BERT-style MLM head, the
four losses and their weighted total, and autograd gradients of the total for every trainable
tensor under the authors' release names. Every operation is written out by hand as in
m2clip_reference.py; nothing comes from nn.MultiheadAttention, F.cross_entropy or the authors'
modules (test_training_reference.py checks against those).

Use as a module:

    import m2clip_reference as ref, m2clip_training_reference as tr
    config = ref.M2ClipConfig.load("config.json")              # with "cmlm" for the MLM head
    w = tr.load_training_weights("weights.safetensors", config, dtype=torch.float64)
    losses, grads = tr.training_gradients(w, config, batch)     # batch: dict of tensors

or from the command line:

    python3 scripts/reference/m2clip_training_reference.py --weights W.safetensors --config C.json \\
        --batch BATCH.safetensors [--labels FILE] --out GRADS.safetensors [--dtype float64] [--json]

The batch (safetensors or dict), B clips:
    pixel_values     F32 (B, T, 3, H, W)  CLIP-normalised
    labels           I64 (B)              class index of each clip, in 0..C-1
    input_ids        I64 (B, L)           the (possibly masked) prompt of each clip, zero padded
                                          after EOT (L <= context length, normally 77)
    mlm_labels       I64 (B, L)           optional: -100 except at masked positions, where it holds
                                          the MLM-vocabulary index of the masked word
    class_token_ids  I64 (C, L')          the unmasked prompts of all C classes (CLI: or --labels)

Configuration: m2clip_reference.py's JSON, whose optional training fields are
    textAdapter.positions  where text adapters sit in textAdapter.layers (default ["preMLP"])
    cmlm                   {"adapterPositions": [...], "words": [...]}; absent: no CMLM at all
    lossWeights            {"contrastive", "cmc", "vc", "mlm"}; absent: 1, 1, 1, 0.1

What is computed (L = text.layers; s = exp(logit_scale), frozen):
    v_i     video embedding: mean over T of the post-adapter frame embeddings F_i (T, P)
    t_i     text embedding of input_ids[i]; w_c of class_token_ids[c] (text tower with adapters,
            ln_final at the first position of the highest id, @ text_projection)
    KL      logits_v2t = s v̂ t̂ᵀ (B, B), logits_t2v its transpose; gt[i,k] = [labels_i == labels_k];
            p = softmax(10 gt, 1); KL(x) = Σ_ik p (log p − log_softmax(x, 1)) / B (ActionCLIP)
    CMC     cross_entropy(s v̂ ŵᵀ (B, C), labels), mean over the batch
    VC      cross_entropy(visual.adapter_fc(ln_post(mean_T CLS of the last block)), labels); no
            dropout (deterministic)
    MLM     CMLM block on the text stream X_i (L_i, width) of input_ids[i] before ln_final:
              q = X_i [→ text adapter transformer.resblocks.L.adapter_pre_attn if "preAttention"]
              x = q + out_proj(MHA(query = ln_1(q), key = value = ln_1(F_i)))  (no mask)
              [→ text adapter adapter_pre_mlp of block L if "preMLP"]
              x = ln_final(x + mlp(ln_2(x)))                           (block L's own tensors)
              logits = LN_1e-12(GELU(dense(x))) @ mlm_adapter.decoder.weightᵀ + mlm_adapter.bias
            cross_entropy over the positions where mlm_labels != -100 (mean over those);
            0 (and no CMLM computation) without mlm_labels or without cmlm in the config
    total   (w.contrastive (KL_v2t + KL_t2v)/2 + w.cmc CMC)/2 + w.vc VC + w.mlm MLM

Trainable (spec §9; the release's `'adapter' in name`): names containing ".adapter_pre_" (TED,
text adapters, the CMLM block's), "visual.t_adapter.", "visual.adapter_fc.", "mlm_adapter.". All
other tensors are frozen (requires_grad False); gradients still flow through them. Gradients of
trainable tensors the total does not reach (the MLM head without mlm_labels, a head with loss
weight 0) are zeros.

Sequence trimming: the text towers run only up to the last EOT (and last labelled position) of
their ids. This changes nothing: text attention is causal, every CMLM query attends only to the
frames, and the losses read only the EOT and labelled positions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import m2clip_reference as ref  # noqa: E402

TRAINABLE_MARKERS = (".adapter_pre_", "visual.t_adapter.", "visual.adapter_fc.", "mlm_adapter.")
MLM_HEAD_LN_EPS = 1e-12
KL_TARGET_SCALE = 10.0
IGNORE_INDEX = -100
LOSS_NAMES = ("contrastive_v2t", "contrastive_t2v", "cmc", "vc", "mlm", "total")


def is_trainable(name: str) -> bool:
    return any(marker in name for marker in TRAINABLE_MARKERS)


def cmlm_prefix(config: ref.M2ClipConfig) -> str:
    return f"transformer.resblocks.{config.text_layers}."


def loss_weights(config: ref.M2ClipConfig) -> ref.LossWeights:
    return config.loss_weights if config.loss_weights is not None else ref.LossWeights()


# --------------------------------------------------------------------------------------------
# Names and shapes


def training_shapes(config: ref.M2ClipConfig) -> dict:
    """Name -> shape of every tensor a training step reads: inference's, plus (with cmlm) the
    CMLM block transformer.resblocks.{L}.*, its text adapters and mlm_adapter.*."""
    shapes = ref.expected_shapes(config)
    if config.cmlm is not None:
        tw, prefix = config.text_width, cmlm_prefix(config)
        shapes.update(ref._block_shapes(prefix, tw, config.mlp_ratio))
        for position in config.cmlm.adapter_positions:
            shapes.update(ref.text_adapter_names(f"{prefix}{ref.POSITION_PREFIX[position]}.", tw,
                                                 config.text_adapter.width))
        shapes.update(ref._linear("mlm_adapter.transform.dense", tw, tw))
        shapes.update({"mlm_adapter.transform.LayerNorm.weight": (tw,),
                       "mlm_adapter.transform.LayerNorm.bias": (tw,),
                       "mlm_adapter.decoder.weight": (len(config.cmlm.words), tw),
                       "mlm_adapter.bias": (len(config.cmlm.words),)})
    return shapes


def trainable_shapes(config: ref.M2ClipConfig) -> dict:
    """The trainable subset of training_shapes, in the same order."""
    return {n: s for n, s in training_shapes(config).items() if is_trainable(n)}


def is_training_skipped(name: str, config: ref.M2ClipConfig) -> bool:
    """Tensors a release file may hold that this config's training step never reads."""
    if config.cmlm is None:
        return ref.is_skipped(name, config)
    if name in ref.OPENAI_SCALARS:
        return True
    if name.startswith("transformer.resblocks."):
        index = name.split(".")[2]
        return index.isdigit() and int(index) > config.text_layers
    return False


def select_training_weights(state: dict, config: ref.M2ClipConfig, strict: bool = True) -> dict:
    """The tensors a training step reads, checked by name and shape (strict: nothing unknown)."""
    shapes = training_shapes(config)
    missing = [n for n in shapes if n not in state]
    if missing:
        raise KeyError(f"state dict lacks {len(missing)} tensors the config needs, e.g. {missing[:5]}")
    for name, shape in shapes.items():
        if tuple(state[name].shape) != tuple(shape) and not (shape == () and state[name].numel() == 1):
            raise ValueError(f"tensor {name} has shape {list(state[name].shape)}, expected {list(shape)}")
    if strict:
        extra = [n for n in state if n not in shapes and not is_training_skipped(n, config)]
        if extra:
            raise KeyError(f"state dict has {len(extra)} tensors the config does not use, "
                           f"e.g. {extra[:5]} (wrong config? use strict=False / --lenient)")
    return {n: state[n] for n in shapes}


def prepare_weights(state: dict, config: ref.M2ClipConfig, dtype=torch.float64, strict: bool = True) -> dict:
    """Selected tensors widened to `dtype`; trainable ones require grad, the rest are frozen."""
    selected = select_training_weights(state, config, strict=strict)
    w = {}
    for name, t in selected.items():
        t = t.detach().to(dtype).clone()
        if name == "logit_scale":
            t = t.reshape(())
        w[name] = t.requires_grad_(is_trainable(name))
    return w


def load_training_weights(path: str, config: ref.M2ClipConfig, dtype=torch.float64,
                          strict: bool = True) -> dict:
    from safetensors.torch import load_file

    return prepare_weights(load_file(path), config, dtype=dtype, strict=strict)


# --------------------------------------------------------------------------------------------
# The CMLM block and the MLM head, by hand


def cross_attention(query_in, kv_in, w, prefix, heads):
    """Multi-head attention from query_in (N, Lq, width) to kv_in (N, Lk, width), no mask, with the
    packed OpenAI in_proj (q, k, v rows) and out_proj of the block at `prefix`."""
    n, lq, width = query_in.shape
    lk = kv_in.shape[1]
    head_dim = width // heads
    weight, bias = w[f"{prefix}in_proj_weight"], w[f"{prefix}in_proj_bias"]
    q = query_in @ weight[:width].T + bias[:width]
    k = kv_in @ weight[width:2 * width].T + bias[width:2 * width]
    v = kv_in @ weight[2 * width:].T + bias[2 * width:]
    q = q.reshape(n, lq, heads, head_dim).transpose(1, 2)  # (N, h, Lq, dh)
    k = k.reshape(n, lk, heads, head_dim).transpose(1, 2)  # (N, h, Lk, dh)
    v = v.reshape(n, lk, heads, head_dim).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)  # (N, h, Lq, Lk)
    scores = scores - scores.amax(dim=-1, keepdim=True)
    probs = scores.exp()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    out = (probs @ v).transpose(1, 2).reshape(n, lq, width)
    return out @ w[f"{prefix}out_proj.weight"].T + w[f"{prefix}out_proj.bias"]


def cmlm_block(stream, frames, w, config: ref.M2ClipConfig):
    """Spec §4 CMLM: text stream (B, L, width) before ln_final, frame embeddings (B, T, P = width)
    -> ln_final of the cross-attention block's output (B, L, width)."""
    if frames.shape[-1] != stream.shape[-1]:
        raise ValueError(f"CMLM: frame embeddings of {frames.shape[-1]} vs text width {stream.shape[-1]}")
    prefix, eps = cmlm_prefix(config), config.layer_norm_eps
    positions = config.cmlm.adapter_positions
    ln_1 = lambda t: ref.layer_norm(t, w[f"{prefix}ln_1.weight"], w[f"{prefix}ln_1.bias"], eps)
    x = stream
    if "preAttention" in positions:
        x = ref.text_adapter(x, w, f"{prefix}adapter_pre_attn.")
    x = x + cross_attention(ln_1(x), ln_1(frames), w, f"{prefix}attn.", config.text_heads)
    if "preMLP" in positions:
        x = ref.text_adapter(x, w, f"{prefix}adapter_pre_mlp.")
    x = x + ref.mlp(ref.layer_norm(x, w[f"{prefix}ln_2.weight"], w[f"{prefix}ln_2.bias"], eps),
                    w, f"{prefix}mlp.")
    return ref.layer_norm(x, w["ln_final.weight"], w["ln_final.bias"], eps)


def mlm_head(x, w):
    """BERT MLM head: dense -> exact GELU -> LayerNorm(1e-12) -> decoder + bias. (..., width) -> (..., V)."""
    h = ref.gelu_erf(ref.linear(x, w, "mlm_adapter.transform.dense"))
    h = ref.layer_norm(h, w["mlm_adapter.transform.LayerNorm.weight"],
                       w["mlm_adapter.transform.LayerNorm.bias"], MLM_HEAD_LN_EPS)
    return h @ w["mlm_adapter.decoder.weight"].T + w["mlm_adapter.bias"]


# --------------------------------------------------------------------------------------------
# Losses, by hand


def log_softmax(x):
    shifted = x - x.amax(dim=-1, keepdim=True)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def cross_entropy(logits, target):
    """Mean over rows of -log softmax(logits)[target]. logits (N, K), target (N) int64."""
    return -log_softmax(logits)[torch.arange(len(target)), target].mean()


def kl_loss(logits, labels):
    """ActionCLIP's KLLoss: Σ p (log p − log_softmax(logits)) / B, p = softmax(10 · [same label])."""
    gt = (labels[:, None] == labels[None, :]).to(logits.dtype)  # (B, B)
    log_p = log_softmax(KL_TARGET_SCALE * gt)
    return (log_p.exp() * (log_p - log_softmax(logits))).sum() / logits.shape[0]


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


# False runs every text sequence over all its L positions, as the release does (clip.tokenize pads
# to 77): the same losses and gradients, more work. Only the peer timing turns it off.
TRIM_SEQUENCES = True


def _trim(ids, extra=None):
    """ids (K, L) cut after the last EOT of any row (and the last position `extra` marks)."""
    if not TRIM_SEQUENCES:
        return ids, extra
    length = int(ids.argmax(dim=-1).max()) + 1
    if extra is not None:
        marked = (extra != IGNORE_INDEX).nonzero()
        if len(marked):
            length = max(length, int(marked[:, 1].max()) + 1)
    return ids[:, :length], (None if extra is None else extra[:, :length])


def check_batch(batch: dict, config: ref.M2ClipConfig) -> None:
    px, labels, ids = batch["pixel_values"], batch["labels"], batch["input_ids"]
    b = px.shape[0]
    if px.dim() != 5:
        raise ValueError(f"pixel_values {tuple(px.shape)}, expected (B, T, 3, H, W)")
    if tuple(labels.shape) != (b,) or labels.dtype != torch.int64:
        raise ValueError(f"labels {tuple(labels.shape)} {labels.dtype}, expected ({b},) int64")
    if ids.dim() != 2 or ids.shape[0] != b or ids.dtype != torch.int64:
        raise ValueError(f"input_ids {tuple(ids.shape)} {ids.dtype}, expected ({b}, L) int64")
    if int(labels.min()) < 0 or int(labels.max()) >= config.classes:
        raise ValueError(f"labels outside 0..{config.classes - 1}")
    classes = batch["class_token_ids"]
    if classes.dim() != 2 or classes.shape[0] != config.classes:
        raise ValueError(f"class_token_ids {tuple(classes.shape)}, expected ({config.classes}, L)")
    mlm = batch.get("mlm_labels")
    if mlm is not None:
        if tuple(mlm.shape) != tuple(ids.shape) or mlm.dtype != torch.int64:
            raise ValueError(f"mlm_labels {tuple(mlm.shape)} {mlm.dtype}, expected {tuple(ids.shape)} int64")
        valid = mlm[mlm != IGNORE_INDEX]
        words = len(config.cmlm.words) if config.cmlm is not None else None
        if len(valid) and (int(valid.min()) < 0 or (words is not None and int(valid.max()) >= words)):
            raise ValueError("mlm_labels outside the MLM vocabulary")


def training_forward(w: dict, config: ref.M2ClipConfig, batch: dict) -> dict:
    """The four losses, their total, and the tensors they come from (all with autograd)."""
    check_batch(batch, config)
    dtype = w["visual.proj"].dtype
    lw = loss_weights(config)
    scale = w["logit_scale"].reshape(()).exp()
    labels = batch["labels"]

    video = ref.encode_video(batch["pixel_values"].to(dtype), w, config)
    v = video["video_embed"]  # (B, P)

    mlm_labels = batch.get("mlm_labels")
    use_mlm = config.cmlm is not None and mlm_labels is not None and bool((mlm_labels != IGNORE_INDEX).any())
    ids, mlm_labels = _trim(batch["input_ids"], mlm_labels if use_mlm else None)
    stream = ref.text_stream(ids, w, config)  # (B, L, width), before ln_final
    t = ref.pool_text(stream, ids, w, config)  # (B, P)
    class_ids, _ = _trim(batch["class_token_ids"])
    classes = ref.text_tower(class_ids, w, config)  # (C, P), with gradient

    v_hat, t_hat, c_hat = normalize(v), normalize(t), normalize(classes)
    logits_v2t = scale * v_hat @ t_hat.T  # (B, B)
    logits_t2v = logits_v2t.T
    out = {"video_embed": v, "frame_embeds": video["frame_embeds"], "text_embeds": t,
           "class_text_embeds": classes, "logits_v2t": logits_v2t,
           "cmc_logits": scale * v_hat @ c_hat.T, "vc_logits": video["vc_logits"]}
    out["contrastive_v2t"] = kl_loss(logits_v2t, labels)
    out["contrastive_t2v"] = kl_loss(logits_t2v, labels)
    out["cmc"] = cross_entropy(out["cmc_logits"], labels)
    out["vc"] = cross_entropy(out["vc_logits"], labels)
    if use_mlm:
        x = cmlm_block(stream, video["frame_embeds"], w, config)  # (B, L, width)
        mask = mlm_labels != IGNORE_INDEX
        out["mlm_logits"] = mlm_head(x[mask], w)  # (masked positions, V)
        out["mlm"] = cross_entropy(out["mlm_logits"], mlm_labels[mask])
    else:
        out["mlm"] = torch.zeros((), dtype=dtype)
    contrastive = (out["contrastive_v2t"] + out["contrastive_t2v"]) / 2
    out["total"] = ((lw.contrastive * contrastive + lw.cmc * out["cmc"]) / 2
                    + lw.vc * out["vc"] + lw.mlm * out["mlm"])
    return out


def training_gradients(w: dict, config: ref.M2ClipConfig, batch: dict):
    """(losses {name: float}, grads {name: tensor}) for every trainable tensor of the config."""
    names = list(trainable_shapes(config))
    out = training_forward(w, config, batch)
    grads = torch.autograd.grad(out["total"], [w[n] for n in names], allow_unused=True)
    result = {n: (torch.zeros_like(w[n]) if g is None else g).detach() for n, g in zip(names, grads)}
    return {k: float(out[k]) for k in LOSS_NAMES}, result


# --------------------------------------------------------------------------------------------
# Built-in torch ops instead of the hand-written ones (for timing PyTorch as people run it)


@contextlib.contextmanager
def fused_ops():
    """Temporarily swap the reference's hand-written LayerNorm, Linear, GELU and (self-)attention
    for F.layer_norm, F.linear, F.gelu and F.scaled_dot_product_attention. Same maths; used to
    time an idiomatic PyTorch step and, in the tests, as one more cross-check."""
    import torch.nn.functional as F

    def layer_norm(x, weight, bias, eps):
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)

    def linear(x, w, name):
        return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

    def gelu_erf(x):
        return F.gelu(x)

    def attention(x, w, prefix, heads, causal):
        n, length, width = x.shape
        qkv = F.linear(x, w[f"{prefix}in_proj_weight"], w[f"{prefix}in_proj_bias"])
        q, k, v = (t.reshape(n, length, heads, width // heads).transpose(1, 2)
                   for t in qkv.split(width, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return F.linear(out.transpose(1, 2).reshape(n, length, width), w[f"{prefix}out_proj.weight"],
                        w[f"{prefix}out_proj.bias"])

    saved = {name: getattr(ref, name) for name in ("layer_norm", "linear", "gelu_erf", "attention")}
    try:
        ref.layer_norm, ref.linear, ref.gelu_erf, ref.attention = layer_norm, linear, gelu_erf, attention
        yield
    finally:
        for name, fn in saved.items():
            setattr(ref, name, fn)


# --------------------------------------------------------------------------------------------
# CLI


def load_batch(path: str) -> dict:
    from safetensors.torch import load_file

    batch = load_file(path)
    for name in ("pixel_values", "labels", "input_ids"):
        if name not in batch:
            raise KeyError(f"{path}: no {name} (has {sorted(batch)})")
    return batch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="M²-CLIP reference training step: losses and gradients.")
    parser.add_argument("--weights", required=True, help="safetensors in the authors' names")
    parser.add_argument("--config", required=True, help="m2clip-config JSON (with cmlm for the MLM head)")
    parser.add_argument("--batch", required=True, help="safetensors: pixel_values, labels, input_ids, "
                        "optional mlm_labels, class_token_ids (or --labels)")
    parser.add_argument("--labels", help="class label set (.txt/.csv/.json) when the batch has no class_token_ids")
    parser.add_argument("--tokenizer", default=ref.DEFAULT_TOKENIZER_DIR)
    parser.add_argument("--out", required=True, help="gradients, float32 safetensors in release names")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--lenient", action="store_true", help="ignore tensors the config does not use")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the losses as JSON")
    args = parser.parse_args(argv)

    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    config = ref.M2ClipConfig.load(args.config)
    w = load_training_weights(args.weights, config, dtype=getattr(torch, args.dtype), strict=not args.lenient)
    batch = load_batch(args.batch)
    if "class_token_ids" not in batch:
        if not args.labels:
            raise SystemExit("error: the batch has no class_token_ids; pass --labels")
        labels, template, token_ids = ref.read_labels(args.labels)
        if token_ids is None:
            token_ids = ref.tokenize_prompts(labels, template or config.prompt_template, args.tokenizer,
                                             config.context_length)
        batch["class_token_ids"] = ref.pad_token_ids(token_ids, config.context_length)
    start = time.perf_counter()
    losses, grads = training_gradients(w, config, batch)
    elapsed = time.perf_counter() - start
    save_file({n: g.float().contiguous() for n, g in grads.items()}, args.out,
              metadata={"producer": "scripts/reference/m2clip_training_reference.py",
                        "compute_dtype": args.dtype, "losses": json.dumps(losses)})
    if args.json:
        print(json.dumps({"losses": losses, "step_ms": elapsed * 1e3}))
    else:
        for k, v in losses.items():
            print(f"{k:<16} {v:.8f}")
        print(f"wrote {len(grads)} gradients to {args.out} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
