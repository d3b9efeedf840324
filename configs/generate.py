"""Generation with GPT-OSS: the model, the engine and the run.

  python -m experiments.generate                      # embedded tiny model, random weights, CPU
  python -m experiments.generate --checkpoint=/path/to/gpt-oss-20b --prompt="Why is the sky blue?"
  python -m experiments.generate --prompt=Hi --prompt="Tell me a joke" --temperature=0.7 --top_p=0.9
  python -m experiments.generate --config=configs/generate.py --config.random_model=gpt_oss_20b \
      --profile_dir=results/trace                     # random full-size 20b on a GPU, traced
"""

import ml_collections

from configs import tiny


def get_config():
  c = ml_collections.ConfigDict()
  # Without --checkpoint: a random model from configs/<random_model>.py (deterministic weights).
  c.random_model = "tiny"
  c.model = tiny.model_config()  # used for random models; a checkpoint brings its own config
  c.dtype = "bfloat16"  # "float32" for exact comparisons
  c.moe_backend = "auto"
  c.max_len = 4096  # KV cache slots on full-attention layers: prompt + new tokens must fit
  c.chunk = 16  # decode steps per on-device loop (text streams once per chunk)
  c.gpu_memory_fraction = 0.95  # of the GPU for JAX's allocator (120b needs more than its default 0.75)
  c.profile_chunk = 1  # with --profile_dir: which decode chunk to trace (0 is the first)
  return c
