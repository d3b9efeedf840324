#!/usr/bin/env python
"""Reference logits for a GPT-OSS checkpoint from Hugging Face transformers (torch, CPU).

Standalone: runs in a separate Python ($HF_PYTHON, see regenerate.sh: torch 2.13.0+cpu,
transformers 5.23.0) and imports nothing from mxfp4_jax. Produces golden fixtures
for the JAX reimplementation.

Input checkpoint: HF layout, as openai/gpt-oss-*: config.json with
quantization_config.quant_method == "mxfp4", sharded model-0000k-of-0000n.safetensors
plus model.safetensors.index.json, experts stored as MXFP4 *_blocks / *_scales (uint8).

The experts are dequantized by HF itself (Mxfp4Config(dequantize=True) ->
transformers.integrations.mxfp4.Mxfp4Dequantize), straight into the dtype of the
model (float32 or bfloat16; E2M1 * 2**k is exact in both). Attention is "eager",
experts are "eager" (the readable per-expert loop in modeling_gpt_oss.GptOssExperts,
not the grouped_mm default), forward is a full causal pass without KV cache.

Output .npz:
  logits_f32   float32 [B, T, V]  model loaded and run in float32 (checked end to end)
  logits_bf16  float32 [B, T, V]  model loaded and run in bfloat16, upcast for storage
  tokens       int32   [B, T]
  transformers_version, torch_version, numpy_version   (str)
  experts_implementation, attn_implementation          (str)
  seconds_f32, seconds_bf16                            (float, forward wall time)

Usage:
  $HF_PYTHON tests/golden/hf_logits.py --checkpoint DIR --tokens toks.npy --out ref.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import transformers
from transformers import GptOssForCausalLM, Mxfp4Config

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def load_model(checkpoint: str, dtype: torch.dtype, experts_impl: str = "eager") -> GptOssForCausalLM:
    """Load on CPU with HF's own MXFP4 dequantization. This is the call that works on CPU
    with transformers 5.23 (no accelerate, no triton, no `kernels` package):
    passing `device_map` would require accelerate, so it is left out (CPU is the default)."""
    with open(os.path.join(checkpoint, "config.json")) as f:
        cfg = json.load(f)
    qm = (cfg.get("quantization_config") or {}).get("quant_method")
    if qm != "mxfp4":
        raise SystemExit(f"{checkpoint}: expected quantization_config.quant_method == 'mxfp4', got {qm!r}")

    model, info = GptOssForCausalLM.from_pretrained(
        checkpoint,
        quantization_config=Mxfp4Config(dequantize=True),
        dtype=dtype,
        attn_implementation="eager",
        experts_implementation=experts_impl,
        output_loading_info=True,
    )
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"loading problems (weights would be randomly initialised): {bad}")
    model.eval()
    check_model(model, dtype, experts_impl)
    return model


def check_model(model: GptOssForCausalLM, dtype: torch.dtype, experts_impl: str) -> None:
    cfg = model.config
    assert cfg._attn_implementation == "eager", cfg._attn_implementation
    assert cfg._experts_implementation == experts_impl, cfg._experts_implementation
    # every parameter (embeddings, attention incl. sinks, router, dequantized experts,
    # norms, lm_head) in the requested dtype -- nothing left uint8 or silently bf16
    wrong = [(n, p.dtype) for n, p in model.named_parameters() if p.dtype != dtype]
    if wrong:
        raise SystemExit(f"parameters not in {dtype}: {wrong[:8]}{' ...' if len(wrong) > 8 else ''}")
    E, H, I = cfg.num_local_experts, cfg.hidden_size, cfg.intermediate_size
    for i, layer in enumerate(model.model.layers):
        ex = layer.mlp.experts
        assert type(ex).__name__ == "GptOssExperts", type(ex)  # dense, not Mxfp4GptOssExperts
        assert tuple(ex.gate_up_proj.shape) == (E, H, 2 * I), (i, ex.gate_up_proj.shape)
        assert tuple(ex.down_proj.shape) == (E, I, H), (i, ex.down_proj.shape)
        assert layer.self_attn.sinks.dtype == dtype and layer.mlp.router.weight.dtype == dtype
    # RoPE inverse frequencies are kept as float32 buffers in both runs
    for n, b in model.named_buffers():
        if b.is_floating_point() and dtype == torch.float32:
            assert b.dtype == torch.float32, (n, b.dtype)


@torch.inference_mode()
def forward_logits(model: GptOssForCausalLM, tokens: np.ndarray) -> tuple[np.ndarray, float]:
    ids = torch.from_numpy(tokens.astype(np.int64))
    t0 = time.perf_counter()
    out = model(input_ids=ids, use_cache=False)  # no attention_mask: plain causal (+ sliding) mask
    dt = time.perf_counter() - t0
    return out.logits.float().numpy(), dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="HF-layout GPT-OSS checkpoint directory")
    ap.add_argument("--tokens", required=True, help=".npy of int32 token ids, shape [B, T]")
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--dtypes", default="f32,bf16", help="comma list of f32,bf16 (default both)")
    ap.add_argument("--experts-impl", default="eager", help="HF experts_implementation (default eager)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = ap.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tokens = np.load(args.tokens)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise SystemExit(f"--tokens must be an integer [B, T] array, got {tokens.dtype} {tokens.shape}")
    tokens = tokens.astype(np.int32)

    result: dict[str, np.ndarray] = {
        "tokens": tokens,
        "transformers_version": np.array(transformers.__version__),
        "torch_version": np.array(torch.__version__),
        "numpy_version": np.array(np.__version__),
        "experts_implementation": np.array(args.experts_impl),
        "attn_implementation": np.array("eager"),
    }
    for name in [s.strip() for s in args.dtypes.split(",") if s.strip()]:
        dtype = DTYPES[name]
        model = load_model(args.checkpoint, dtype, args.experts_impl)
        V = model.config.vocab_size
        if tokens.min() < 0 or tokens.max() >= V:
            raise SystemExit(f"token ids outside [0, {V})")
        logits, secs = forward_logits(model, tokens)
        assert logits.shape == (*tokens.shape, V), logits.shape
        if not np.isfinite(logits).all():
            raise SystemExit(f"non-finite logits in the {name} run")
        result[f"logits_{name}"] = logits.astype(np.float32)
        result[f"seconds_{name}"] = np.array(secs)
        print(f"[{name}] B,T={tokens.shape} forward {secs:.3f}s  |logits| rms {np.sqrt((logits**2).mean()):.4f}")
        del model

    if "logits_f32" in result and "logits_bf16" in result:
        a, b = result["logits_f32"], result["logits_bf16"]
        rel = float(np.linalg.norm(a - b) / np.linalg.norm(a))
        result["rel_err_bf16_vs_f32"] = np.array(rel)
        print(f"f32 vs bf16: rel err ||a-b||/||a|| = {rel:.3e}, max abs {np.abs(a - b).max():.3e}")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez(args.out, **result)
    print(f"wrote {args.out}  (transformers {transformers.__version__}, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
