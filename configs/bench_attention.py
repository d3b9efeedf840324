"""Benchmark of attention at GPT-OSS shapes: the Pallas prefill kernel in a few tilings against
the jnp path (float32 scores in HBM), and the decode kernel by its split.

  python -m experiments.bench_attention --config=configs/bench_attention.py
  python -m experiments.bench_attention --config=configs/bench_attention.py \
      --config.lengths=8192 --config.tilings=64x64x4x2
  python -m experiments.bench_attention --config=configs/bench_attention.py \
      --config.lengths= --config.decode_batches=1,8 --config.decode_programs=8,64,256
"""

import ml_collections

from mxfp4_jax.benchmarking import PAST_L2_BYTES


def get_config():
  c = ml_collections.ConfigDict()
  c.lengths = "1024,8192"  # prompt tokens (batch 1)
  c.windows = "0,128"  # 0: full causal attention; else a sliding window of that many keys
  c.kv_heads, c.group, c.head_dim = 8, 8, 64  # GPT-OSS: 64 query heads over 8 KV heads
  # block_q x block_k x num_warps x num_stages for the kernel; "xla" times the jnp path.
  c.tilings = "xla,64x64x4x2,128x64x4x2,128x64x8x2,64x32x4x3,128x128x8x2"
  # Decode: batches (empty: none), contexts (keys in the cache) and decode_attention's
  # num_programs to time, over the windows above.
  c.decode_batches = ""
  c.decode_contexts = "1024,8192"
  c.decode_programs = "8,16,32,64,128,256"
  c.decode_rotated_bytes = PAST_L2_BYTES  # caches rotated between calls
  c.calls = (2, 10)  # calls per timed chain (two lengths; the slope is the time per call)
  c.bf16_flops_per_s = 0.0  # 0: this GPU's measured ceiling (experiments.common.ceilings)
  c.seed = 0
  c.output_dir = ""
  return c
