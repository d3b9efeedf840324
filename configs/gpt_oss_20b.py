"""GPT-OSS-20B: 24 layers, 32 experts (top 4), 21B parameters, 3.6B active.

  python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py
  python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1,8
  cfg = mxfp4_jax.model.GptOssConfig.from_dict(gpt_oss_20b.get_config().model)
"""

import ml_collections


def model_config(num_layers: int = 24, num_experts: int = 32) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      vocab_size=201088, hidden_size=2880, num_layers=num_layers, num_experts=num_experts,
      experts_per_token=4, intermediate_size=2880, num_heads=64, num_kv_heads=8, head_dim=64,
      sliding_window=128, rope_theta=150000.0, rope_scaling_factor=32.0,
      rope_original_context=4096, rope_beta_fast=32.0, rope_beta_slow=1.0, rms_norm_eps=1e-5,
      swiglu_limit=7.0, dtype="bfloat16", moe_backend="auto", moe_interpret=False,
      attention_backend="auto", router_backend="auto"))


def get_config():
  c = ml_collections.ConfigDict()
  c.model = model_config()
  c.checkpoint = ""  # empty: random weights of the real shapes
  c.seed = 0
  c.bench = bench_config()
  return c


def bench_config() -> ml_collections.ConfigDict:
  """What experiments.bench_e2e measures."""
  return ml_collections.ConfigDict(dict(
      batch_sizes="1,8,64,256",  # decode batch sizes
      context=1024,  # prompt tokens before decoding
      decode_steps=64,  # decode steps in one timed chunk (after an untimed run)
      timed_runs=5,  # timed runs of each decode batch and prefill; their median is reported
      prefill_lengths="1024,2048,8192",  # prompt lengths for prefill throughput (batch 1)
      # Prompt tokens per prefill call of a decode batch (at least one prompt a call); unset:
      # the library's default (engine.PREFILL_TOKENS). Fewer take less memory for activations.
      prefill_tokens=ml_collections.config_dict.placeholder(int),
      gpu_memory_fraction=0.95,  # of the GPU for JAX's allocator (its default 0.75 is too little for 120b)
      compilation_cache_dir="",  # set to measure warm starts: run twice, compare compile times
      kernel_options="",  # KernelConfig fields replaced in every tuned config, e.g. "prefetch=2"
      # XLA options for the decode loop at every batch; unset: the library's default
      # (engine.DECODE_COMPILER_OPTIONS); "": none
      decode_compiler_options=ml_collections.config_dict.placeholder(str),
      profile_dir="",  # set to trace one more run of each case (experiments.trace_summary)
      hbm_bytes_per_s=0.0, bf16_flops_per_s=0.0,  # 0: this GPU's (experiments.common.ceilings)
      output_dir=""))
