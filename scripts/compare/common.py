"""Shared pieces of the comparison scripts in scripts/compare/.

- `ensure_checkpoint`: a full-size random Hugging Face CLIP ViT-B/16 saved in HF format (built once
  from a seed, reused while its recipe marker matches).
- `make_pixel_values`: deterministic image-like clips, already CLIP-normalised.
- `find_m2clip` / `run_m2clip`: locate the Swift CLI and run it with `--json`.

Not meant to be run; import it from a script in this folder.

Weight recipe (why not transformers' default init): a freshly initialised CLIPModel has zero
biases, identity LayerNorms and tiny q/k weights, so attention is almost uniform and a wrong bias,
LayerNorm affine or attention mask could still match. `perturb_weights` keeps the default init for
the token / position / class embeddings (real CLIP's are of the same size, std ~0.02) and redraws
everything else:
  linear and patch-conv weights  N(0, 1/fan_in)  (variance-preserving: attention logits std ~1,
                                                   a residual stream that grows with depth)
  q_proj weights                 gain 2          (logit std ~2, clearly non-uniform attention)
  visual/text projections        gain 0.5        (embedding norms ~10, as OpenAI ViT-B/16's)
  linear biases                  N(0, 0.1^2)
  LayerNorm weight / bias        U(0.8, 1.2) / N(0, 0.1^2)
  logit_scale                    log(100)        (OpenAI's trained value; exp gives 100)
"""

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = REPO_ROOT / "Resources" / "CLIPVocabulary" / "clip-tokenizer"
DEFAULT_M2CLIP = REPO_ROOT / ".build" / "release" / "m2clip"
DEFAULT_WORK_DIR = Path("/tmp/m2clip-vitb16")
DEFAULT_SEED = 0

# Bump when the model recipe changes, so a stale work dir is rebuilt instead of reused.
RECIPE_VERSION = 1
RECIPE_FILE = "m2clip-recipe.json"

# CLIP preprocessing constants (the spec, section 1).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

VITB16_TEXT = dict(
    vocab_size=49408,
    hidden_size=512,
    intermediate_size=2048,
    num_attention_heads=8,
    num_hidden_layers=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=1,
    projection_dim=512,
)
VITB16_VISION = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    image_size=224,
    patch_size=16,
    num_channels=3,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=512,
)
VITB16_PROJECTION = 512


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@torch.no_grad()
def perturb_weights(model, seed: int) -> None:
    """Redraw the weights of a CLIPModel as described in the module docstring."""
    g = torch.Generator().manual_seed(seed + 1)

    def normal_(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            gain = 1.0
            if name.endswith("q_proj"):
                gain = 2.0
            elif name in ("visual_projection", "text_projection"):
                gain = 0.5
            normal_(module.weight, gain / math.sqrt(module.in_features))
            if module.bias is not None:
                normal_(module.bias, 0.1)
        elif isinstance(module, torch.nn.Conv2d):
            fan_in = module.weight[0].numel()
            normal_(module.weight, 1.0 / math.sqrt(fan_in))
            if module.bias is not None:
                normal_(module.bias, 0.1)
        elif isinstance(module, torch.nn.LayerNorm):
            module.weight.copy_(0.8 + 0.4 * torch.rand(module.weight.shape, generator=g))
            normal_(module.bias, 0.1)
    model.logit_scale.fill_(math.log(100.0))


def build_vitb16(seed: int):
    """A random CLIP ViT-B/16 (fp32, eval mode) from `seed`."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=VITB16_TEXT,
        vision_config=VITB16_VISION,
        projection_dim=VITB16_PROJECTION,
        logit_scale_init_value=math.log(100.0),
    )
    model = CLIPModel(config).eval()
    perturb_weights(model, seed)
    return model


def ensure_checkpoint(work_dir: Path, seed: int = DEFAULT_SEED, log=print) -> Path:
    """Make sure `work_dir` holds the seeded ViT-B/16 in HF format; build it if not.

    Writes config.json, model.safetensors (fp32, ~600 MB), vocab.json, merges.txt and a recipe
    marker written last, so an interrupted build is redone rather than reused.
    """
    work_dir = Path(work_dir)
    marker = work_dir / RECIPE_FILE
    wanted = {"recipe": RECIPE_VERSION, "seed": seed, "model": "clip-vit-b16-random"}
    needed = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]
    if marker.exists() and all((work_dir / f).exists() for f in needed):
        if json.loads(marker.read_text()) == wanted:
            log(f"reusing checkpoint {work_dir}")
            return work_dir
    log(f"building random CLIP ViT-B/16 (seed {seed}) in {work_dir} ...")
    quiet_transformers()
    if marker.exists():
        marker.unlink()
    work_dir.mkdir(parents=True, exist_ok=True)
    model = build_vitb16(seed)
    model.save_pretrained(work_dir, safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(TOKENIZER_DIR / f, work_dir / f)
    for stale in work_dir.glob("*.onnx*"):  # exports of an older checkpoint
        stale.unlink()
    marker.write_text(json.dumps(wanted, indent=2) + "\n")
    return work_dir


def load_checkpoint(work_dir: Path, attn_implementation: str = "eager"):
    """The checkpoint in `work_dir` as an fp32 CLIPModel in eval mode."""
    from transformers import CLIPModel

    quiet_transformers()
    model = CLIPModel.from_pretrained(work_dir, attn_implementation=attn_implementation,
                                      dtype=torch.float32)
    return model.eval()


def load_tokenizer(work_dir: Path):
    from transformers import CLIPTokenizer

    quiet_transformers()
    return CLIPTokenizer.from_pretrained(work_dir)


def make_pixel_values(frames: int = 8, size: int = 224, seed: int = DEFAULT_SEED) -> torch.Tensor:
    """(frames, 3, size, size) CLIP-normalised pixels of smooth random images plus fine noise.

    Image-like rather than white noise, so frames differ in content the way video frames do and
    their embeddings are not all alike.
    """
    g = torch.Generator().manual_seed(seed + 2)
    coarse = torch.rand(frames, 3, 7, 7, generator=g)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                             align_corners=False)
    images = (images + 0.05 * torch.randn(images.shape, generator=g)).clamp(0.0, 1.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return ((images - mean) / std).contiguous()


def save_pixels(pixel_values: torch.Tensor, path: Path) -> Path:
    """Write `pixel_values` F32 (N, 3, H, W) in the layout `m2clip embed --pixels` reads."""
    from safetensors.torch import save_file

    save_file({"pixel_values": pixel_values.float().contiguous()}, str(path))
    return path


class M2ClipError(RuntimeError):
    pass


def find_m2clip(path) -> Path | None:
    """The m2clip binary at `path`, or None when it is not there (not built yet)."""
    p = Path(path)
    if p.is_file() and os.access(p, os.X_OK):
        return p
    return None


def missing_m2clip_message(path) -> str:
    return (f"m2clip not found at {path}: build it with `swift build -c release` in {REPO_ROOT}, "
            f"or pass --m2clip PATH")


def run_m2clip(binary: Path, arguments: list[str], timeout: float = 1800.0, parse: bool = True):
    """Run `m2clip ARGUMENTS --json` and return its parsed JSON, or raise M2ClipError.

    With parse=False (commands without --json, e.g. convert) run `m2clip ARGUMENTS` and return its
    stdout text.
    """
    command = [str(binary), *arguments] + (["--json"] if parse else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise M2ClipError(f"{' '.join(command)}: no answer after {timeout:.0f} s") from e
    if done.returncode != 0:
        detail = done.stderr.strip()
        raise M2ClipError(f"{' '.join(command)}: exit status {done.returncode}"
                          + (f"\n{detail}" if detail else ""))
    text = done.stdout.strip()
    if not parse:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # Tolerate log lines before the JSON document.
        start = text.find("{")
        try:
            return json.loads(text[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            pass
        raise M2ClipError(f"{' '.join(command)}: stdout is not JSON:\n{text[:2000]}")
