#!/usr/bin/env python
"""Independent check that HF's MXFP4 dequantization (Mxfp4Config(dequantize=True)) follows

    value = E2M1[code] * 2**(scale - 127)
    low nibble of byte b = element 2b along the input dim, high nibble = element 2b+1
    E2M1 = [0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, -1, -1.5, -2, -3, -4, -6]

and how the dequantized experts are laid out / used in HF's forward:
  * gate_up_proj ends up as [E, in=H, out=2I] (x @ W), down_proj as [E, in=I, out=H]
  * gate/up are interleaved along the output dim: gate = h[..., ::2], up = h[..., 1::2]

Runs in $HF_PYTHON (numpy, safetensors, torch, transformers); imports nothing from mxfp4_jax.
Usage: $HF_PYTHON tests/golden/check_hf_mxfp4_convention.py --checkpoint DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_logits import load_model  # noqa: E402

E2M1 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float64)


def dequant_ref(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """blocks uint8 (..., out, G, 16), scales uint8 (..., out, G) -> float64 (..., out, in=G*32)."""
    lo = E2M1[blocks & 0x0F]
    hi = E2M1[blocks >> 4]
    vals = np.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], 32)  # even idx = low nibble
    vals = vals * np.exp2(scales.astype(np.float64) - 127.0)[..., None]
    return vals.reshape(*blocks.shape[:-2], -1)


def read_tensors(ckpt: str) -> dict[str, torch.Tensor]:
    with open(os.path.join(ckpt, "model.safetensors.index.json")) as f:
        wm = json.load(f)["weight_map"]
    out = {}
    for fname in sorted(set(wm.values())):
        with safe_open(os.path.join(ckpt, fname), framework="pt") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
    return out


def expert_mlp_ref(x, wgu, bgu, wd, bd, alpha=1.702, limit=7.0, interleaved=True):
    """Reference SwiGLU expert with out-major weights wgu [2I, H], wd [H, I] (float64).
    interleaved=True: gate/up alternate by row of the checkpoint tensor (gate = even rows);
    interleaved=False: gate = first half of the rows, up = second half (the wrong convention)."""
    h = x @ wgu.T + bgu
    if interleaved:
        gate, up = h[..., ::2], h[..., 1::2]
    else:
        n = h.shape[-1] // 2
        gate, up = h[..., :n], h[..., n:]
    gate = np.minimum(gate, limit)
    up = np.clip(up, -limit, limit)
    g = gate / (1.0 + np.exp(-alpha * gate))
    return ((up + 1.0) * g) @ wd.T + bd


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    args = ap.parse_args()
    raw = read_tensors(args.checkpoint)
    model = load_model(args.checkpoint, torch.float32)
    cfg = model.config
    rng = np.random.default_rng(0)
    ok = True
    for li, layer in enumerate(model.model.layers):
        ex = layer.mlp.experts
        p = f"model.layers.{li}.mlp.experts."
        gu = dequant_ref(raw[p + "gate_up_proj_blocks"].numpy(), raw[p + "gate_up_proj_scales"].numpy())  # [E, 2I, H]
        dn = dequant_ref(raw[p + "down_proj_blocks"].numpy(), raw[p + "down_proj_scales"].numpy())  # [E, H, I]
        hf_gu = ex.gate_up_proj.detach().double().numpy()
        hf_dn = ex.down_proj.detach().double().numpy()
        print(f"layer {li}: HF gate_up_proj {tuple(hf_gu.shape)} {ex.gate_up_proj.dtype}, "
              f"down_proj {tuple(hf_dn.shape)}; ref out-major gate_up {gu.shape}, down {dn.shape}")
        same_t = np.array_equal(hf_gu, gu.transpose(0, 2, 1)) and np.array_equal(hf_dn, dn.transpose(0, 2, 1))
        # sign of zero too: -0 codes must survive (irrelevant numerically, but tells the LUT is the same)
        signs = np.array_equal(np.signbit(hf_gu), np.signbit(gu.transpose(0, 2, 1)))
        # the opposite nibble order must NOT match (guards against a vacuous check)
        swapped = dequant_ref(((raw[p + "gate_up_proj_blocks"].numpy() << 4) | (raw[p + "gate_up_proj_blocks"].numpy() >> 4)).astype(np.uint8),
                              raw[p + "gate_up_proj_scales"].numpy())
        swapped_matches = np.array_equal(hf_gu, swapped.transpose(0, 2, 1))
        print(f"  HF == ref^T ([E, in, out]) exactly: {same_t}; signbits equal: {signs}; "
              f"swapped-nibble ref matches: {swapped_matches}")
        ok &= same_t and not swapped_matches

        # expert forward: HF's GptOssExperts (eager) vs float64 reference with interleaved gate/up
        T = 16
        x = rng.standard_normal((T, cfg.hidden_size))
        k = cfg.num_experts_per_tok
        idx = np.stack([rng.permutation(cfg.num_local_experts)[:k] for _ in range(T)])
        w = rng.random((T, k)); w /= w.sum(-1, keepdims=True)
        with torch.inference_mode():
            y_hf = ex(torch.tensor(x, dtype=torch.float32), torch.tensor(idx), torch.tensor(w, dtype=torch.float32)).double().numpy()
        bgu = raw[p + "gate_up_proj_bias"].float().double().numpy()
        bd = raw[p + "down_proj_bias"].float().double().numpy()
        y_ref = np.zeros_like(x)
        y_alt = np.zeros_like(x)  # gate = first half, up = second half (wrong convention)
        for t in range(T):
            for j in range(k):
                e = idx[t, j]
                y_ref[t] += w[t, j] * expert_mlp_ref(x[t], gu[e], bgu[e], dn[e], bd[e], cfg.swiglu_alpha, cfg.swiglu_limit)
                y_alt[t] += w[t, j] * expert_mlp_ref(x[t], gu[e], bgu[e], dn[e], bd[e], cfg.swiglu_alpha,
                                                     cfg.swiglu_limit, interleaved=False)
        rel = np.linalg.norm(y_hf - y_ref) / np.linalg.norm(y_ref)
        rel_alt = np.linalg.norm(y_hf - y_alt) / np.linalg.norm(y_ref)
        print(f"  experts forward vs float64 ref (gate=::2, up=1::2): rel {rel:.2e};"
              f" vs concatenated-halves convention: rel {rel_alt:.2e}")
        ok &= rel < 1e-5 and rel_alt > 1e-2
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
