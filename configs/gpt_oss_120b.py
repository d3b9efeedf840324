"""GPT-OSS-120B: 36 layers, 128 experts (top 4), 117B parameters, 5.1B active.

  python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py   # (GPU)
  cfg = mxfp4_jax.model.GptOssConfig.from_dict(get_config().model)

On an 80 GB H100 every batch fits beside the 61 GiB of weights, batch 256 at a 1k context with
the library's 8k prompt tokens a prefill call (74.14 GiB peak; with 32k it ran out of memory:
BENCHMARKS.md, forty-second round).
"""

from configs import gpt_oss_20b


def get_config():
  c = gpt_oss_20b.get_config()
  c.model = gpt_oss_20b.model_config(num_layers=36, num_experts=128)
  return c
