"""Convert a GPT-OSS safetensors checkpoint into packed orbax params (see the config's docstring)."""

from __future__ import annotations

import time

from absl import app

import mxfp4_jax
from experiments import common
from mxfp4_jax.model.loading import save_packed

_CONFIG = common.define_config("convert_checkpoint.py")


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  for field in ("checkpoint", "output"):
    if not config[field]:
      raise app.UsageError(f"--config.{field} is required")
  start = time.perf_counter()
  model = mxfp4_jax.load_model(config.checkpoint, dtype=config.dtype, moe_backend="reference")
  loaded = time.perf_counter()
  path = save_packed(model, config.output)
  saved = time.perf_counter()
  restored_model = mxfp4_jax.load_model(path, dtype=config.dtype)
  del restored_model
  print(f"loaded {config.checkpoint} in {loaded - start:.2f} s, saved packed params to {path} in "
        f"{saved - loaded:.2f} s; restoring them takes {time.perf_counter() - saved:.2f} s")


if __name__ == "__main__":
  app.run(main)
