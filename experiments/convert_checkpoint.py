"""Convert a GPT-OSS safetensors checkpoint into packed orbax params (see the config's docstring)."""

from __future__ import annotations

import pathlib
import shutil
import time

from absl import app

import mxfp4_jax
from experiments import common
from mxfp4_jax.generate.tokenizer import tokenizer_dirs
from mxfp4_jax.model.loading import save_packed

_CONFIG = common.define_config("convert_checkpoint.py")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  for field in ("checkpoint", "output"):
    if not config[field]:
      raise app.UsageError(f"--config.{field} is required")
  output = pathlib.Path(config.output)
  common.check_dir_to_write("--config.output", output)  # before the minutes of loading
  # The checkpoint's dir, or for original/ the repo around it, which load_model would then read
  # as packed params.
  if output.resolve() in {pathlib.Path(d).resolve() for d in tokenizer_dirs(config.checkpoint)}:
    raise app.UsageError(f"--config.output: {output} is the checkpoint's own directory; the "
                         "packed params need one of their own")
  start = time.perf_counter()
  model = common.load_checkpoint(config.checkpoint, "--config.checkpoint",
                                 dict(moe_backend="reference"))
  loaded = time.perf_counter()
  path = save_packed(model, config.output)
  copied = _copy_tokenizer(pathlib.Path(config.checkpoint), path)
  saved = time.perf_counter()
  restored_model = mxfp4_jax.load_model(path)
  del restored_model
  print(f"loaded {config.checkpoint} in {loaded - start:.2f} s, saved packed params to {path} in "
        f"{saved - loaded:.2f} s ({', '.join(copied) or 'no tokenizer files'} copied); restoring "
        f"them takes {time.perf_counter() - saved:.2f} s")


def _copy_tokenizer(source: pathlib.Path, target: pathlib.Path) -> list[str]:
  """The tokenizer and chat template travel with the packed params (an original/ dir keeps them
  in its parent)."""
  copied = []
  for name in TOKENIZER_FILES:
    for folder in map(pathlib.Path, tokenizer_dirs(source)):
      if (folder / name).is_file():
        shutil.copy2(folder / name, target / name)
        copied.append(name)
        break
  return copied


if __name__ == "__main__":
  app.run(main)
