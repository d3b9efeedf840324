"""Convert a GPT-OSS safetensors checkpoint (HF or original/ layout) into packed orbax params.

  python -m experiments.convert_checkpoint --config.checkpoint=DIR --config.output=OUT
  python -m experiments.convert_checkpoint --config.checkpoint=tests/golden/tiny_hf \
      --config.output=results/tiny_packed

``mxfp4_jax.load_model(OUT)`` then restores the model already packed, without safetensors. The
dense parameters are saved in bfloat16, as the checkpoints store them; ``load_model(OUT,
dtype="float32")`` restores them in float32, to the same values.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.checkpoint = ""  # the safetensors checkpoint directory (required)
  c.output = ""  # where to write the packed checkpoint (required)
  return c
