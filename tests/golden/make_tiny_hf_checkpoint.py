#!/usr/bin/env python
"""Write a tiny random GPT-OSS checkpoint in Hugging Face layout (MXFP4 experts).

Runs in a separate Python ($HF_PYTHON, see regenerate.sh); needs only numpy, torch and
safetensors. Imports nothing from mxfp4_jax.

The layout mirrors openai/gpt-oss-20b on the Hub:
  config.json                       (quantization_config.quant_method = "mxfp4")
  model-00001-of-00002.safetensors  \
  model-00002-of-00002.safetensors   > bf16 dense tensors, uint8 MXFP4 experts
  model.safetensors.index.json      /

Expert tensors per layer (E experts, H hidden, I intermediate):
  mlp.experts.gate_up_proj_blocks  uint8 (E, 2I, H/32, 16)   two E2M1 codes per byte
  mlp.experts.gate_up_proj_scales  uint8 (E, 2I, H/32)       E8M0 exponent, bias 127
  mlp.experts.gate_up_proj_bias    bf16  (E, 2I)             rows interleaved gate/up
  mlp.experts.down_proj_blocks     uint8 (E, H, I/32, 16)
  mlp.experts.down_proj_scales     uint8 (E, H, I/32)
  mlp.experts.down_proj_bias       bf16  (E, H)

Usage:
  $HF_PYTHON tests/golden/make_tiny_hf_checkpoint.py --out /tmp/tiny_ckpt [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

TINY = dict(
    vocab_size=256,
    hidden_size=64,
    num_hidden_layers=2,
    num_local_experts=4,
    num_experts_per_tok=2,
    intermediate_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    sliding_window=8,
)


def make_config(d: dict) -> dict:
    """config.json modeled on openai/gpt-oss-20b, with tiny dimensions."""
    n_layers = d["num_hidden_layers"]
    return {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "eos_token_id": d["vocab_size"] - 2,
        "experts_per_token": d["num_experts_per_tok"],
        "head_dim": d["head_dim"],
        "hidden_act": "silu",
        "hidden_size": d["hidden_size"],
        "initial_context_length": 4096,
        "initializer_range": 0.02,
        "intermediate_size": d["intermediate_size"],
        "layer_types": [
            "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)
        ],
        "max_position_embeddings": 131072,
        "model_type": "gpt_oss",
        "num_attention_heads": d["num_attention_heads"],
        "num_experts_per_tok": d["num_experts_per_tok"],
        "num_hidden_layers": n_layers,
        "num_key_value_heads": d["num_key_value_heads"],
        "num_local_experts": d["num_local_experts"],
        "output_router_logits": False,
        "pad_token_id": d["vocab_size"] - 1,
        "quantization_config": {
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
            "quant_method": "mxfp4",
        },
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "rope_type": "yarn",
            "truncate": False,
        },
        "rope_theta": 150000,
        "router_aux_loss_coef": 0.9,
        "sliding_window": d["sliding_window"],
        "swiglu_limit": 7.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": d["vocab_size"],
    }


def make_tensors(d: dict, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    V, H = d["vocab_size"], d["hidden_size"]
    E, I = d["num_local_experts"], d["intermediate_size"]
    nh, nkv, hd = d["num_attention_heads"], d["num_key_value_heads"], d["head_dim"]
    assert H % 32 == 0 and I % 32 == 0

    def bf16(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)

    def normal(shape, std):
        return bf16(rng.standard_normal(shape) * std)

    def u8(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8))

    def mx_blocks(out_dim, in_dim):
        return u8(rng.integers(0, 256, size=(E, out_dim, in_dim // 32, 16)))

    def mx_scales(out_dim, in_dim):
        return u8(rng.integers(118, 125, size=(E, out_dim, in_dim // 32)))  # 118..124

    t: dict[str, torch.Tensor] = {}
    t["model.embed_tokens.weight"] = normal((V, H), 1.0)
    for n in range(d["num_hidden_layers"]):
        p = f"model.layers.{n}."
        t[p + "input_layernorm.weight"] = bf16(1.0 + 0.1 * rng.standard_normal(H))
        t[p + "self_attn.q_proj.weight"] = normal((nh * hd, H), H**-0.5)
        t[p + "self_attn.q_proj.bias"] = normal((nh * hd,), 0.1)
        t[p + "self_attn.k_proj.weight"] = normal((nkv * hd, H), H**-0.5)
        t[p + "self_attn.k_proj.bias"] = normal((nkv * hd,), 0.1)
        t[p + "self_attn.v_proj.weight"] = normal((nkv * hd, H), H**-0.5)
        t[p + "self_attn.v_proj.bias"] = normal((nkv * hd,), 0.1)
        t[p + "self_attn.o_proj.weight"] = normal((H, nh * hd), (nh * hd) ** -0.5)
        t[p + "self_attn.o_proj.bias"] = normal((H,), 0.1)
        t[p + "self_attn.sinks"] = normal((nh,), 1.0)
        t[p + "post_attention_layernorm.weight"] = bf16(1.0 + 0.1 * rng.standard_normal(H))
        t[p + "mlp.router.weight"] = normal((E, H), H**-0.5)
        t[p + "mlp.router.bias"] = normal((E,), 0.1)
        t[p + "mlp.experts.gate_up_proj_blocks"] = mx_blocks(2 * I, H)
        t[p + "mlp.experts.gate_up_proj_scales"] = mx_scales(2 * I, H)
        t[p + "mlp.experts.gate_up_proj_bias"] = normal((E, 2 * I), 0.1)
        t[p + "mlp.experts.down_proj_blocks"] = mx_blocks(H, I)
        t[p + "mlp.experts.down_proj_scales"] = mx_scales(H, I)
        t[p + "mlp.experts.down_proj_bias"] = normal((E, H), 0.1)
    t["model.norm.weight"] = bf16(1.0 + 0.1 * rng.standard_normal(H))
    t["lm_head.weight"] = normal((V, H), H**-0.5)
    return t


def write_checkpoint(out_dir: str, seed: int = 0, n_shards: int = 2, dims: dict | None = None) -> None:
    d = dict(TINY if dims is None else dims)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(make_config(d), f, indent=2, sort_keys=True)
        f.write("\n")

    tensors = make_tensors(d, seed)
    names = list(tensors)  # deterministic insertion order
    # split as evenly as possible by bytes, keeping key order
    sizes = [tensors[k].numel() * tensors[k].element_size() for k in names]
    total = sum(sizes)
    shards: list[list[str]] = [[] for _ in range(n_shards)]
    acc = 0
    for k, s in zip(names, sizes):
        idx = min(n_shards - 1, acc * n_shards // total)
        shards[idx].append(k)
        acc += s
    weight_map = {}
    for i, keys in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in keys}, os.path.join(out_dir, fname), metadata={"format": "pt"})
        for k in keys:
            weight_map[k] = fname
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output checkpoint directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()
    write_checkpoint(args.out, seed=args.seed, n_shards=args.shards)
    print(f"wrote tiny GPT-OSS checkpoint to {args.out}")


if __name__ == "__main__":
    main()
