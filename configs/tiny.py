"""A tiny GPT-OSS with the real structure (sinks, alternating sliding window, YaRN, GQA, top-k
MoE with interleaved gate/up): for tests, notebooks and generate's CPU default.

  python -m experiments.bench_e2e --config=configs/tiny.py

  cfg = mxfp4_jax.model.GptOssConfig.from_dict(get_config().model)
"""

import ml_collections

from configs import gpt_oss_20b


def get_config():
  c = gpt_oss_20b.get_config()
  c.model.update(dict(
      vocab_size=512, hidden_size=64, num_layers=2, num_experts=4, experts_per_token=2,
      intermediate_size=64, num_heads=4, num_kv_heads=2, head_dim=16, sliding_window=8))
  c.bench.update(dict(batch_sizes="1,4", context=24, decode_steps=8, prefill_lengths="32,64",
                      timed_runs=2))
  return c


def model_config() -> ml_collections.ConfigDict:
  return get_config().model
