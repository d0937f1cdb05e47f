#!/usr/bin/env python3
"""Self-tests of m2clip_reference.py (unittest; CPU, a few seconds):

    python3 scripts/reference/test_m2clip_reference.py

- The by-hand TED-Adapter and post adapter equal module versions built the way the release
  stores them (nn.Linear, depthwise nn.Conv1d over T, nn.Conv3d with kernel (1, 3, 3)), loaded
  with load_state_dict(strict=True) from the same tensors — this pins the weight layouts and the
  conv orientation (tap k of Conv1d on frame t+k-1; 3×3 tap (a, b) on grid cell (row+a-1, col+b-1)).
- Zero-initialised adapters (the release's init: convs and fc biases zero) leave CLIP unchanged.
- Text: zero padding after EOT, batching and chunking do not change the embeddings.
- Clips in a batch are independent; strict loading rejects missing / mis-shaped / unknown tensors
  and skips the CMLM block and MLM head; the config JSON round-trips.
- The CLI reproduces the stored fixture outputs (Tests/Fixtures/m2clip-tiny) in float32.
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import m2clip_reference as ref  # noqa: E402
import random_m2clip  # noqa: E402

FIXTURE = os.path.join(ref.REPO_ROOT, "Tests", "Fixtures", "m2clip-tiny")


def tiny_config(**ted):
    c = ref.M2ClipConfig(
        vision_width=32, vision_layers=2, vision_heads=4, vision_patch_size=8, image_size=32,
        text_width=32, text_layers=2, text_heads=4, vocab_size=1000, context_length=77,
        sot_token_id=998, eot_token_id=999, projection_dim=24,
        ted=ref.TEDConfig(**{"positions": ["preAttention", "preMLP"], "layers": [0, 1],
                             "width": 16, **ted}),
        post_adapter=ref.PostAdapterConfig(enabled=True, width=12),
        text_adapter=ref.TextAdapterConfig(layers=[1], width=16), classes=5)
    c.validate()
    return c


class TEBranch(nn.Module):
    """TE as a release-style module: fc1 -> depthwise Conv1d over T -> fc2."""

    def __init__(self, d, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, r), nn.Linear(r, d)
        self.conv = nn.Conv1d(r, r, 3, padding=1, groups=r)

    def forward(self, x):  # (B, T, L, d)
        b, t, length, _ = x.shape
        h = self.fc1(x)
        r = h.shape[-1]
        h = h.permute(0, 2, 3, 1).reshape(b * length, r, t)
        h = self.conv(h).reshape(b, length, r, t).permute(0, 3, 1, 2)
        return self.fc2(h)


class TDBranch(nn.Module):
    """TD as a release-style module: frame difference -> fc1 -> Conv3d (1, 3, 3) -> fc2."""

    def __init__(self, d, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, r), nn.Linear(r, d)
        self.conv = nn.Conv3d(r, r, (1, 3, 3), padding=(0, 1, 1), groups=r)

    def forward(self, x):  # (B, T, 1+M, d)
        b, t, length, d = x.shape
        g = int(round((length - 1) ** 0.5))
        p = x[:, :, 1:]
        diff = torch.cat([torch.zeros_like(p[:, :1]), p[:, 1:] - p[:, :-1]], dim=1)
        h = self.fc1(diff)  # (B, T, M, r)
        r = h.shape[-1]
        h = h.permute(0, 3, 1, 2).reshape(b, r, t, g, g)
        h = self.conv(h).reshape(b, r, t, g * g).permute(0, 2, 3, 1)
        z = self.fc2(h)
        return torch.cat([torch.zeros_like(x[:, :, :1]), z], dim=2)


class TEDModule(nn.Module):
    def __init__(self, d, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, r), nn.Linear(r, d)
        self.conv = nn.Conv1d(r, r, 3, padding=1, groups=r)
        self.offset_adapter = TDBranch(d, r)

    def forward(self, x):
        te = TEBranch.forward(self, x)
        return x + te + self.offset_adapter(x)


def sub_state(w, prefix):
    return {n[len(prefix):]: t for n, t in w.items() if n.startswith(prefix)}


class ReferenceTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.config = tiny_config()
        cls.w = {n: t.double() for n, t in
                 random_m2clip.random_weights(cls.config, seed=3, adapter_gain=0.3,
                                              logit_scale=2.3, release_extras=False).items()}

    def test_ted_matches_module_layout(self):
        prefix = "visual.transformer.resblocks.1.adapter_pre_attn."
        module = TEDModule(32, 16).double()
        module.load_state_dict(sub_state(self.w, prefix), strict=True)
        for t in (1, 2, 5):
            z = torch.randn(2, t, 17, 32, dtype=torch.float64)
            with torch.no_grad():
                expected = module(z)
            got = ref.ted_adapter(z, self.w, prefix, self.config)
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)

    def test_te_and_td_toggles(self):
        prefix = "visual.transformer.resblocks.0.adapter_pre_mlp."
        z = torch.randn(1, 4, 17, 32, dtype=torch.float64)
        te = TEBranch(32, 16).double()
        te.load_state_dict({k: v for k, v in sub_state(self.w, prefix).items()
                            if not k.startswith("offset_adapter.")}, strict=True)
        td = TDBranch(32, 16).double()
        td.load_state_dict(sub_state(self.w, prefix + "offset_adapter."), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(ref.ted_adapter(z, self.w, prefix, tiny_config(td=False)),
                                       z + te(z), rtol=1e-12, atol=1e-12)
            got = ref.ted_adapter(z, self.w, prefix, tiny_config(te=False))
            torch.testing.assert_close(got, z + td(z), rtol=1e-12, atol=1e-12)
        self.assertTrue(torch.equal(got[:, :, 0], z[:, :, 0]), "TD must leave CLS unchanged")

    def test_spatial_orientation(self):
        # A single tap at (a, b) = (0, 1) reads the cell one row up: out[i, j] = in[i-1, j].
        h = torch.randn(1, 1, 16, 2, dtype=torch.float64)
        weight = torch.zeros(2, 1, 1, 3, 3, dtype=torch.float64)
        weight[:, 0, 0, 0, 1] = 1.0
        out = ref.spatial_dwconv(h, weight, torch.zeros(2, dtype=torch.float64), 4).reshape(4, 4, 2)
        grid = h.reshape(4, 4, 2)
        torch.testing.assert_close(out[1:], grid[:-1])
        self.assertTrue(bool((out[0] == 0).all()))

    def test_post_adapter_matches_module(self):
        module = TEBranch(24, 12).double()
        module.load_state_dict(sub_state(self.w, "visual.t_adapter."), strict=True)
        x = torch.randn(3, 6, 24, dtype=torch.float64)
        with torch.no_grad():
            expected = x + module(x[:, :, None])[:, :, 0]
        torch.testing.assert_close(ref.post_adapter(x, self.w), expected, rtol=1e-12, atol=1e-12)

    def test_zero_init_adapters_are_identity(self):
        w = dict(self.w)
        for n in w:
            if (".adapter_pre_" in n or "t_adapter." in n) and (n.endswith("bias") or ".conv." in n):
                w[n] = torch.zeros_like(w[n])
        pixels = random_m2clip.make_clip(4, 32, seed=5)
        plain = copy.deepcopy(self.config)
        plain.ted.layers, plain.post_adapter.enabled = [], False
        a = ref.forward(w, self.config, pixels)
        b = ref.forward(w, plain, pixels)
        torch.testing.assert_close(a["video_embed"], b["video_embed"], rtol=0, atol=1e-12)
        torch.testing.assert_close(a["vc_logits"], b["vc_logits"], rtol=0, atol=1e-12)

    def test_text_padding_batching(self):
        g = torch.Generator().manual_seed(0)
        lists = [[998, *torch.randint(1, 998, (n,), generator=g).tolist(), 999] for n in (0, 3, 20, 75)]
        padded = ref.pad_token_ids(lists, 77)
        full = ref.text_tower(padded, self.w, self.config)
        for i, ids in enumerate(lists):
            one = ref.text_tower(torch.tensor([ids]), self.w, self.config)[0]
            torch.testing.assert_close(one, full[i], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ref.encode_labels(padded, self.w, self.config, chunk=3), full,
                                   rtol=1e-12, atol=1e-12)

    def test_clips_are_independent(self):
        x = torch.stack([random_m2clip.make_clip(3, 32, seed=s) for s in (1, 2)])
        both = ref.forward(self.w, self.config, x)
        for i in range(2):
            one = ref.forward(self.w, self.config, x[i])
            for k in ("frame_embeds", "video_embed", "vc_logits"):
                torch.testing.assert_close(both[k][i], one[k], rtol=1e-12, atol=1e-12)

    def test_strict_loading(self):
        w = {n: t.float() for n, t in self.w.items()}
        ref.select_weights(w, self.config)
        with self.assertRaises(KeyError):
            ref.select_weights({n: t for n, t in w.items() if n != "visual.t_adapter.fc2.bias"}, self.config)
        with self.assertRaises(ValueError):
            ref.select_weights({**w, "visual.proj": w["visual.proj"].T}, self.config)
        with self.assertRaises(KeyError):  # a TED tensor the config does not have
            ref.select_weights(w, tiny_config(positions=["preMLP"]))
        ref.select_weights(w, tiny_config(positions=["preMLP"]), strict=False)
        extras = {"mlm_adapter.bias": torch.zeros(3), "transformer.resblocks.2.ln_1.weight": torch.ones(32),
                  "input_resolution": torch.tensor(32)}
        ref.select_weights({**w, **extras}, self.config)

    def test_config_roundtrip(self):
        c = tiny_config(te=False)
        self.assertEqual(ref.M2ClipConfig.from_json(json.loads(json.dumps(c.to_json()))), c)
        bad = c.to_json()
        bad["ted"]["positions"] = ["preFFN"]
        with self.assertRaises(ValueError):
            ref.M2ClipConfig.from_json(bad)

    @unittest.skipUnless(os.path.exists(os.path.join(FIXTURE, "reference.safetensors")), "no fixture")
    def test_cli_reproduces_fixture(self):
        from safetensors.torch import load_file, save_file

        stored = load_file(os.path.join(FIXTURE, "reference.safetensors"))
        with tempfile.TemporaryDirectory() as tmp:
            pixels = os.path.join(tmp, "p.safetensors")
            out = os.path.join(tmp, "o.safetensors")
            save_file({"pixel_values": stored["case.preattn_premlp.pixel_values"]}, pixels)
            subprocess.run([sys.executable, os.path.join(HERE, "m2clip_reference.py"),
                            "--weights", os.path.join(FIXTURE, "weights.safetensors"),
                            "--config", os.path.join(FIXTURE, "config.json"), "--pixels", pixels,
                            "--labels", os.path.join(FIXTURE, "labels.json"), "--out", out,
                            "--threads", "1"], check=True, capture_output=True)
            got = load_file(out)
        for k in ("frame_embeds", "video_embed", "vc_logits", "label_text_embeds", "label_scores"):
            torch.testing.assert_close(got[k], stored[f"case.preattn_premlp.{k}"], rtol=1e-5, atol=1e-5)
        self.assertTrue(torch.equal(got["label_token_ids"], stored["label_token_ids"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
