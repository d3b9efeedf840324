"""Small random GPT-OSS checkpoints in the exact published layouts, for tests and demos.

Real weights cannot be downloaded here, so loaders are proven on checkpoints written with the real
names, shapes, dtypes, sharding and config files. Both layouts are written from one canonical dict
drawn from ``seed``, so the same seed gives the same values in either layout.
"""

from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from mxfp4_jax.argcheck import is_int
from mxfp4_jax.checkpoint import config_json, names
from mxfp4_jax.checkpoint.safetensors_io import CONFIG, INDEX, ORIGINAL_SUBDIR
from mxfp4_jax.mxfp4 import format as fmt

BF16 = np.dtype(ml_dtypes.bfloat16)
LINEAR_STD = 0.02
EXPERT_STD = 0.05
NORM_STD = 0.1
SINK_STD = 0.5


def random_canonical(hparams: dict, seed: int) -> dict[str, np.ndarray]:
  """The canonical dict a random checkpoint holds: bf16 floats, float32 norms (bf16-exact values),
  and MXFP4 experts quantized from N(0, 0.05) weights with the input dim last."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, (shape, _) in names.canonical_shapes(hparams).items():
    if name.endswith(".scales"):
      continue  # made together with its blocks
    if name.endswith(".blocks"):
      e, n, k_blocks, _ = shape
      k = k_blocks * fmt.BLOCK_SIZE
      w = rng.normal(0.0, EXPERT_STD, (e, n, k)).astype(np.float32)  # [E, N, K]
      blocks, scales = fmt.quantize(jnp.asarray(w), axis=-1)
      out[name] = np.asarray(blocks)  # [E, N, K/32, 16]
      out[name.removesuffix(".blocks") + ".scales"] = np.asarray(scales)  # [E, N, K/32]
    elif names.is_norm(name):
      out[name] = (1.0 + NORM_STD * rng.standard_normal(shape)).astype(BF16).astype(np.float32)
    else:
      std = SINK_STD if name.endswith(".sinks") else LINEAR_STD
      out[name] = rng.normal(0.0, std, shape).astype(BF16)
  return out


def write_random_checkpoint(path, hparams: dict, layout: str, seed: int,
                            num_shards: int | None = None, *, nested: bool = False
                            ) -> pathlib.Path:
  """Writes a random checkpoint and returns the directory that holds its files; safetensors
  files and an index already there are removed first (a stale shard would load).

  ``layout="hf"``: ``model-0000k-of-0000n.safetensors`` shards plus ``model.safetensors.index.json``
  (or a lone ``model.safetensors`` when ``num_shards == 1``) and an HF ``config.json``.
  ``layout="original"``: ``model.safetensors`` (or, sharded as gpt-oss-120b's,
  ``model--0000k-of-0000n.safetensors`` and the index) and an original ``config.json``, under
  ``path/original/`` when ``nested`` (where a published repo keeps them). ``num_shards``
  defaults to 2 for HF and 1 for original, as gpt-oss-20b's.
  """
  if layout not in names.LAYOUTS:
    raise ValueError(f"layout must be one of {names.LAYOUTS}, got {layout!r}")
  if type(nested) is not bool or (nested and layout == "hf"):
    raise ValueError(f"nested must be a bool, and True only for the original layout, got "
                     f"{nested!r} with layout={layout!r}")
  # What loaders refuse is refused here; what they read back (Python numbers: NumPy ones would
  # not go into config.json) is what gets written.
  hparams = config_json.parse_config(config_json.to_hf_config(hparams), "hparams")
  # Checked before any stale file is removed: a shard holds at least one tensor.
  if num_shards is None:
    num_shards = 2 if layout == "hf" else 1
  if not is_int(num_shards):
    raise TypeError(f"num_shards must be an int or None, got {num_shards!r}")
  num_tensors = sum(len(rule.disk) for rule in names.layout_rules(hparams, layout))
  if not 1 <= num_shards <= num_tensors:
    raise ValueError(f"num_shards must be in [1, {num_tensors}], got {num_shards}")
  path = pathlib.Path(path)
  if layout == "original" and nested:
    path = path / ORIGINAL_SUBDIR
  path.mkdir(parents=True, exist_ok=True)
  for stale in [*path.glob("*.safetensors"), path / INDEX]:
    stale.unlink(missing_ok=True)
  canonical = random_canonical(hparams, seed)
  if layout == "hf":
    # HF stores its norm scales in bf16 too (their values are bf16-exact)
    canonical = {k: v.astype(BF16) if names.is_norm(k) else v for k, v in canonical.items()}
    config = config_json.to_hf_config(hparams)
  else:
    config = config_json.to_original_config(hparams)
  shard_name = "model-{:05d}-of-{:05d}.safetensors" if layout == "hf" else (
      "model--{:05d}-of-{:05d}.safetensors")
  _write_shards(path, names.to_disk(canonical, hparams, layout), num_shards, shard_name,
                metadata={"format": "pt"} if layout == "hf" else None)  # what transformers writes
  (path / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
  return path


def _write_shards(path: pathlib.Path, disk: dict[str, np.ndarray], num_shards: int,
                  shard_name: str, metadata: dict | None) -> None:
  if num_shards == 1:
    save_file(disk, path / "model.safetensors", metadata=metadata)
    return
  keys, weight_map = list(disk), {}
  bounds = np.linspace(0, len(keys), num_shards + 1).round().astype(int)
  for k in range(num_shards):
    part = keys[bounds[k]:bounds[k + 1]]
    file_name = shard_name.format(k + 1, num_shards)
    save_file({name: disk[name] for name in part}, path / file_name, metadata=metadata)
    weight_map.update(dict.fromkeys(part, file_name))
  total_size = sum(a.nbytes for a in disk.values())
  index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
  (path / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
