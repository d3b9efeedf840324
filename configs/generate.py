"""Generation with GPT-OSS: the model, the engine and the run.

  python -m experiments.generate                      # embedded tiny model, random weights, CPU
  python -m experiments.generate --checkpoint=/path/to/gpt-oss-20b --prompt="Why is the sky blue?"
  python -m experiments.generate --prompt=Hi --prompt="Tell me a joke" --temperature=0.7 --top_p=0.9
  python -m experiments.generate --config=configs/generate.py:gpt_oss_20b \
      --profile_dir=results/trace                     # random full-size 20b on a GPU, traced
  python -m experiments.generate --config=configs/generate.py:gpt_oss_20b --config.model.num_layers=2
"""

import importlib

import ml_collections


def get_config(random_model: str = "tiny"):
  """``random_model`` (after the colon in ``--config``): the configs/ file whose model runs, with
  random weights, when no --checkpoint is given."""
  c = ml_collections.ConfigDict()
  # Random weights without --checkpoint; a checkpoint brings its own hyperparameters and takes
  # only the model's runtime fields (dtype, backends) from here.
  try:
    c.model = importlib.import_module(f"configs.{random_model}").get_config().model
  except (ImportError, AttributeError):
    raise ValueError(f"--config=configs/generate.py:{random_model}: no model config in "
                     f"configs/{random_model}.py (e.g. :tiny, :gpt_oss_20b)") from None
  # KV cache slots on full-attention layers: prompt + new tokens - 1 must fit (the last token
  # sampled takes no slot).
  c.max_len = 4096
  c.chunk = 16  # decode steps per on-device loop (text streams once per chunk)
  # Prompt tokens a prefill call; unset: the library's (mxfp4_jax.generate.engine.PREFILL_TOKENS)
  c.prefill_tokens = ml_collections.config_dict.placeholder(int)
  # XLA options for the decode loop at every batch, NAME=VALUE,...; unset: the library's default
  # (mxfp4_jax.generate.engine.DECODE_COMPILER_OPTIONS); "": none
  c.decode_compiler_options = ml_collections.config_dict.placeholder(str)
  c.gpu_memory_fraction = 0.95  # of the GPU for JAX's allocator (120b needs more than its default 0.75)
  c.profile_chunk = 1  # with --profile_dir: which decode chunk to trace (0 is the first)
  return c
