#!/usr/bin/env python3
"""Does an `m2clip export --authors` file load into the authors' own PyTorch code, and does their
model compute the same training step as ours? (Issue 10: "the authors' PyTorch code can continue
training it".) By hand, not in CI: it needs a checkout of the authors' release
(https://github.com/sallymmx/m2clip, whose models_adapter.py is imported from --release, never
copied here), torch and transformers.

    m2clip export --model k400.m2c --authors k400-release.safetensors
    python3 scripts/compare/authors_release.py --release ~/src/m2clip \
        --export k400-release.safetensors [--batch BATCH.safetensors --labels labels.txt \
        --config config.json --reference GRADS.safetensors]

1. Builds the release's CLIP module (models_adapter.CLIP, fp32, the shapes read off the export:
   classes, MLM vocabulary, TED placement, which text blocks carry adapters) and loads the export
   with load_state_dict(strict=True): every tensor the release's module has, no other.
2. With --batch: the training step as the release runs it (its forward under autocast, as main.py
   trains — fp16 by default, see --autocast; eval mode, so no dropout),
   the four losses of spec §4 with the config's weights, autograd gradients of every trainable
   tensor (the release's `'adapter' in name`), compared with --reference (gradients saved by
   scripts/reference/m2clip_training_reference.py or `m2clip train grad`, whose metadata carries
   the losses): per-tensor cosine and max error relative to the tensor's largest gradient.
"""

import argparse
import json
import math
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "reference"))


def import_release(release: Path):
    """models_adapter from the authors' checkout, with their configs module replaced by the two
    values it reads (no CLIP download: the weights come from the export)."""
    configs = types.ModuleType("configs")
    configs.CLIP_VIT_B16_PATH = configs.CLIP_VIT_B32_PATH = configs.CLIP_VIT_L14_PATH = None
    configs.DWCONV3D_DISABLE_CUDNN = True
    sys.modules["configs"] = configs
    sys.path.insert(0, str(release))
    import models_adapter  # noqa: E402  (the authors' file)

    return models_adapter


def release_module(models_adapter, state: dict, frames: int):
    """The release's CLIP with the sizes and adapter placement of `state`."""
    def has(name):
        return name in state

    vision_layers = sum(1 for i in range(64) if has(f"visual.transformer.resblocks.{i}.ln_1.weight"))
    text_blocks = sum(1 for i in range(64) if has(f"transformer.resblocks.{i}.ln_1.weight"))
    text_adapted = [i for i in range(text_blocks)
                    if any(has(f"transformer.resblocks.{i}.adapter_pre_{p}.textad_fc1.weight") for p in ("attn", "mlp"))]
    vision_width = state["visual.conv1.weight"].shape[0]
    patch = state["visual.conv1.weight"].shape[-1]
    grid = round(math.sqrt(state["visual.positional_embedding"].shape[0] - 1))
    width = state["ln_final.weight"].shape[0]
    adapter_width = state["visual.transformer.resblocks.0.adapter_pre_mlp.fc1.weight"].shape[0] \
        if has("visual.transformer.resblocks.0.adapter_pre_mlp.fc1.weight") \
        else state["visual.transformer.resblocks.0.adapter_pre_attn.fc1.weight"].shape[0]
    text_width = state[f"transformer.resblocks.{text_adapted[0]}.adapter_pre_"
                       + ("mlp" if has(f"transformer.resblocks.{text_adapted[0]}.adapter_pre_mlp.textad_fc1.weight") else "attn")
                       + ".textad_fc1.weight"].shape[0]
    if text_adapted != list(range(text_blocks - len(text_adapted), text_blocks)):
        raise SystemExit(f"text adapters in blocks {text_adapted}: the release puts them in the last blocks only")
    model = models_adapter.CLIP(
        embed_dim=state["text_projection"].shape[1], image_resolution=grid * patch,
        vision_layers=vision_layers, vision_width=vision_width, vision_patch_size=patch,
        vision_adapter_width=adapter_width, vision_adapter_layers=vision_layers,
        vision_adapter_kernel_size=(3, 1, 1),
        vision_adapter_pre_attn=has("visual.transformer.resblocks.0.adapter_pre_attn.fc1.weight"),
        vision_adapter_pre_mlp=has("visual.transformer.resblocks.0.adapter_pre_mlp.fc1.weight"),
        context_length=state["positional_embedding"].shape[0], vocab_size=state["token_embedding.weight"].shape[0],
        transformer_width=width, transformer_heads=width // 64, transformer_layers=text_blocks,
        text_adapter_width=text_width, text_adapter_layers=len(text_adapted), text_adapter_kernel_size=(3, 1, 1),
        text_adapter_pre_attn=any(has(f"transformer.resblocks.{i}.adapter_pre_attn.textad_fc1.weight") for i in text_adapted),
        text_adapter_pre_mlp=any(has(f"transformer.resblocks.{i}.adapter_pre_mlp.textad_fc1.weight") for i in text_adapted),
        num_classes=state["visual.adapter_fc.weight"].shape[0], num_frames=frames,
        mlm_head_len=state["mlm_adapter.decoder.weight"].shape[0])
    return model


def training_step(model, batch: dict, class_ids: torch.Tensor, weights) -> dict:
    """The release's forward, spec §4's losses on its outputs."""
    import m2clip_training_reference as tr

    pixels = batch["pixel_values"].permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W), as the release feeds it
    labels = batch["labels"]
    logits_v2t, logits_t2v, video, text_stream, frame_embeds, vc_logits = model(pixels, batch["input_ids"])
    classes, _ = model.encode_text(class_ids)
    scale = model.logit_scale.exp()
    cmc_logits = scale * video @ (classes / classes.norm(dim=-1, keepdim=True)).T
    out = {"contrastive_v2t": tr.kl_loss(logits_v2t, labels), "contrastive_t2v": tr.kl_loss(logits_t2v, labels),
           "cmc": tr.cross_entropy(cmc_logits, labels), "vc": tr.cross_entropy(vc_logits, labels)}
    mlm = batch.get("mlm_labels")
    out["mlm"] = model.compute_mlm(text_stream, mlm, frame_embeds)["mlm_loss"] if mlm is not None \
        else torch.zeros(())
    out["total"] = ((weights.contrastive * (out["contrastive_v2t"] + out["contrastive_t2v"]) / 2
                     + weights.cmc * out["cmc"]) / 2 + weights.vc * out["vc"] + weights.mlm * out["mlm"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--release", required=True, type=Path, help="checkout of the authors' release (models_adapter.py)")
    p.add_argument("--export", required=True, help="m2clip export --authors output")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", help="a training batch (pixel_values, labels, input_ids, mlm_labels)")
    p.add_argument("--labels", help="the class labels (for the CMC term's class prompts)")
    p.add_argument("--config", help="m2clip-config JSON (prompt template, loss weights)")
    p.add_argument("--reference", help="gradients to compare with (metadata 'losses')")
    p.add_argument("--autocast", choices=("float16", "bfloat16"), default="float16",
                   help="the release's mixed precision (it cannot run its backward in plain fp32)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from safetensors.torch import load_file, safe_open

    models_adapter = import_release(args.release)
    state = load_file(args.export)
    model = release_module(models_adapter, state, args.frames).float()
    result = {"export": args.export, "tensors": len(state)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        print(f"FAIL: the release's module does not take {args.export}:\n{error}", file=sys.stderr)
        return 1
    result["load_state_dict_strict"] = "ok"
    result["release_parameters"] = sum(t.numel() for t in model.state_dict().values())

    if args.batch:
        import m2clip_reference as ref
        import m2clip_training_reference as tr

        if not (args.labels and args.config):
            raise SystemExit("--batch needs --labels and --config")
        config = ref.M2ClipConfig.load(args.config)
        batch = load_file(args.batch)
        labels, template, token_ids = ref.read_labels(args.labels)
        if token_ids is None:
            token_ids = ref.tokenize_prompts(labels, template or config.prompt_template, ref.DEFAULT_TOKENIZER_DIR,
                                             config.context_length)
        class_ids = ref.pad_token_ids(token_ids, config.context_length)
        model.eval()  # the release's only train-mode difference is the VC head's dropout
        trainable = {n: t for n, t in model.named_parameters() if "adapter" in n}
        for n, t in model.named_parameters():
            t.requires_grad_(n in trainable)
        # The release trains under CUDA autocast (main.py); its adapters add in place into the
        # tensor their fc1 saved (Adapter2: x_id[:, 1:, :] += offset), which autograd refuses in
        # plain fp32 — under autocast fc1 saves its own half-precision copy. So: CPU autocast.
        with torch.autocast("cpu", dtype=getattr(torch, args.autocast)):
            out = training_step(model, batch, class_ids, tr.loss_weights(config))
        grads = torch.autograd.grad(out["total"], list(trainable.values()), allow_unused=True)
        result["autocast"] = args.autocast
        result["losses"] = {k: float(v.detach()) for k, v in out.items()}
        if args.reference:
            with safe_open(args.reference, "pt") as f:
                theirs = json.loads((f.metadata() or {}).get("losses", "{}"))
                worst_cos, worst_err, worst_name = 1.0, 0.0, None
                compared = 0
                for (name, _), g in zip(trainable.items(), grads):
                    if name not in f.keys():
                        continue
                    r = f.get_tensor(name).double()
                    g = torch.zeros_like(r) if g is None else g.double()
                    scale = float(r.abs().max())
                    if scale == 0:
                        continue
                    cos = float((g.flatten() @ r.flatten()) / (g.norm() * r.norm()))
                    err = float((g - r).abs().max()) / scale
                    compared += 1
                    if cos < worst_cos:
                        worst_cos, worst_name = cos, name
                    worst_err = max(worst_err, err)
            result["reference_losses"] = theirs
            result["loss_abs_diff"] = {k: abs(result["losses"][k] - theirs[k]) for k in theirs if k in result["losses"]}
            result["gradients_compared"] = compared
            result["min_cosine"] = worst_cos
            result["min_cosine_tensor"] = worst_name
            result["max_error_over_max_abs"] = worst_err
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
