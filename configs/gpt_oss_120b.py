"""GPT-OSS-120B: 36 layers, 128 experts (top 4), 117B parameters, 5.1B active.

  python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py   # (GPU)
  cfg = mxfp4_jax.model.GptOssConfig.from_dict(get_config().model)

On an 80 GB GPU decode batch 256 at a 1k context ran out of memory beside the 61 GiB of weights
(its row says so; BENCHMARKS.md, forty-first round), when a batch's prefill still held its caches
twice; batches up to 64 fit. With the caches held once, batch 256 with smaller prefill calls
(--config.bench.prefill_tokens=4096) has not yet run on a GPU.
"""

from configs import gpt_oss_20b


def get_config():
  c = gpt_oss_20b.get_config()
  c.model = gpt_oss_20b.model_config(num_layers=36, num_experts=128)
  return c
