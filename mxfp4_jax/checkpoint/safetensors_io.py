"""Reading GPT-OSS safetensors checkpoints of either layout into canonical tensors.

Checkpoints are tens of GB, so tensors are read one at a time (`safe_open` memory-maps the files)
and every name, shape and dtype is checked from the file headers before the first byte of data is
read: a wrong checkpoint fails in a second, with the offending tensor named, not after a long load.
(Values are checked as they are used: an expert's scale bytes when `mxfp4_jax.load_model` packs it.)
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import Iterator

import numpy as np
from safetensors import safe_open
from tqdm.auto import tqdm

from mxfp4_jax.argcheck import is_int
from mxfp4_jax.checkpoint import names
from mxfp4_jax.checkpoint.config_json import read_config
from mxfp4_jax.checkpoint.errors import CheckpointError

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"  # shards' index, in either layout
ORIGINAL_SUBDIR = "original"
_FLOAT_DTYPES = frozenset({"BF16", "F16", "F32", "F64"})
_HF_PREFIXES = ("model.", "lm_head.")
_ORIGINAL_PREFIXES = ("block.", "embedding.", "unembedding.", "norm.")
_SHOWN = 3  # names listed in a missing/unexpected error before "..."


def _safetensors_files(path: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in path.glob("*.safetensors") if p.is_file())


def _resolve(path) -> tuple[str, pathlib.Path]:
  """(layout, the directory that holds the files): an HF repo's root, or its ``original/``."""
  path = pathlib.Path(path)
  if not path.is_dir():
    raise CheckpointError(f"{path}: not a directory")
  files, index = _safetensors_files(path), path / INDEX
  if not files and not index.exists():
    if (path / ORIGINAL_SUBDIR).is_dir():
      return _resolve(path / ORIGINAL_SUBDIR)
    raise CheckpointError(f"{path}: no *.safetensors files")
  if not (path / CONFIG).is_file():
    raise CheckpointError(f"{path / CONFIG}: no such file")
  if index.exists() and (path / "model.safetensors").exists():
    raise CheckpointError(f"{path}: holds both a sharded index ({INDEX}) and a single "
                          "model.safetensors; remove whichever is stale")
  # File names do not tell the layouts apart (both use model.safetensors, and both may be
  # sharded with an index); tensor names do.
  where, keys = (index, _weight_map(index)) if index.exists() else (files[0], _keys(files[0]))
  if any(k.startswith(_HF_PREFIXES) for k in keys):
    return "hf", path
  if any(k.startswith(_ORIGINAL_PREFIXES) for k in keys):
    return "original", path
  raise CheckpointError(f"{where}: holds neither HF (model.*) nor original (block.*) tensor names")


def _keys(file: pathlib.Path) -> list[str]:
  try:
    with safe_open(file, framework="numpy") as f:
      return list(f.keys())
  except Exception as e:  # the Rust binding raises its own SafetensorError
    raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None


def detect_layout(path) -> str:
  """"hf" or "original" for a checkpoint directory; an HF repo with only ``original/`` resolves
  to that."""
  return _resolve(path)[0]


def read_hparams(path) -> dict:
  """The canonical hyperparameters of the checkpoint in ``path``, from the config.json beside
  its tensor files."""
  return read_config(_resolve(path)[1] / CONFIG)


def _weight_map(index: pathlib.Path) -> dict[str, str]:
  """An index's tensor name -> shard file name."""
  try:
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
  except OSError as e:
    raise CheckpointError(f"{index}: unreadable ({e.strerror})") from None
  except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
    raise CheckpointError(f"{index}: no readable weight_map ({e!r})") from None
  if not (isinstance(weight_map, dict) and all(isinstance(v, str) for v in weight_map.values())):
    raise CheckpointError(f"{index}: weight_map must map tensor names to file names")
  # Shard names as file names ("./model-00001-of-00002.safetensors" is that file too).
  return {k: pathlib.PurePosixPath(v).name for k, v in weight_map.items()}


def _catalog(path: pathlib.Path) -> dict[str, tuple[pathlib.Path, str, tuple[int, ...]]]:
  """Disk name -> (file, dtype, shape) from the headers; the index, when present, says where."""
  catalog = {}
  index = path / INDEX
  weight_map = _weight_map(index) if index.exists() else None
  if weight_map is not None:
    files = [path / f for f in sorted(set(weight_map.values()))]
  else:
    files = _safetensors_files(path)
  for file in files:
    if not file.is_file():
      raise CheckpointError(f"{index}: maps tensors to {file.name}, which does not exist")
    try:
      with safe_open(file, framework="numpy") as f:
        for key in f.keys():
          if key in catalog:
            raise CheckpointError(
                f"{path}: tensor {key} is in both {catalog[key][0].name} and {file.name}")
          if weight_map is not None and key not in weight_map:
            raise CheckpointError(f"{index}: does not list tensor {key} (in {file.name})")
          if weight_map is not None and weight_map[key] != file.name:
            raise CheckpointError(f"{index}: tensor {key} is in {file.name} but the index "
                                  f"maps it to {weight_map[key]}")
          view = f.get_slice(key)
          catalog[key] = (file, view.get_dtype(), tuple(view.get_shape()))
    except CheckpointError:
      raise
    except Exception as e:
      raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None
  if weight_map is not None:
    for key, file_name in weight_map.items():
      if key not in catalog:
        raise CheckpointError(f"{index}: maps tensor {key} to {file_name}, which does not hold it")
  return catalog


def _listed(what: str, keys: list[str]) -> str:
  shown = ", ".join(keys[:_SHOWN]) + (", ..." if len(keys) > _SHOWN else "")
  return f"{what} tensor {shown}" if len(keys) == 1 else f"{len(keys)} {what} tensors: {shown}"


def _check(rules: list[names.Rule], catalog: dict, path: pathlib.Path) -> None:
  """Names, shapes and dtypes from the headers, against the shapes the config implies."""
  wanted = [name for rule in rules for name in rule.disk]
  known = set(wanted)
  missing = [name for name in wanted if name not in catalog]
  if missing:
    raise CheckpointError(f"{path}: {_listed('missing', missing)}")
  unexpected = sorted(name for name in catalog if name not in known)
  if unexpected:
    raise CheckpointError(f"{path}: {_listed('unexpected', unexpected)}")
  for rule in rules:
    for name, shape in zip(rule.disk, rule.disk_shapes):
      file, dtype, stored = catalog[name]
      if stored != shape:
        raise CheckpointError(f"{file.name}: tensor {name} has shape {stored}, expected {shape}")
      if rule.kind == names.MXFP4 and dtype != "U8":
        raise CheckpointError(
            f"{file.name}: tensor {name} has dtype {dtype}, expected U8 (MXFP4 bytes)")
      if rule.kind == names.FLOAT and dtype not in _FLOAT_DTYPES:
        raise CheckpointError(
            f"{file.name}: tensor {name} has dtype {dtype}, expected a float dtype")


def iter_canonical(path, num_layers: int | None = None, *,
                   progress: bool = True) -> Iterator[tuple[str, np.ndarray]]:
  """Yields ``(canonical name, numpy array)`` for every tensor of the checkpoint in ``path``.

  One tensor is in host memory at a time (plus the parts of HF's split qkv). ``num_layers`` loads
  only the first layers, for a truncated model; the checks still cover the whole checkpoint.
  Names, shapes and dtypes are validated against the shapes config.json implies before any data
  is read, so such a checkpoint raises `CheckpointError` at this call, not midway through.
  """
  if num_layers is not None and not is_int(num_layers):
    raise ValueError(f"num_layers must be an int or None, got {num_layers!r}")
  layout, path = _resolve(path)
  hparams = read_config(path / CONFIG)
  if num_layers is None:
    num_layers = hparams["num_layers"]
  if not 0 <= num_layers <= hparams["num_layers"]:
    raise CheckpointError(f"{path / CONFIG}: num_layers={num_layers} is outside "
                          f"[0, num_hidden_layers={hparams['num_layers']}]")
  catalog = _catalog(path)
  _check(names.layout_rules(hparams, layout), catalog, path)  # every layer, read or not
  return _read(names.layout_rules(hparams, layout, num_layers), catalog,
               f"loading {layout} checkpoint", progress)


def _read(rules, catalog, description, progress) -> Iterator[tuple[str, np.ndarray]]:
  with contextlib.ExitStack() as stack:
    handles = {}
    bar = stack.enter_context(
        tqdm(total=len(rules), desc=description, unit="tensor", disable=not progress))
    for rule in rules:
      arrays = []
      for name in rule.disk:
        file = catalog[name][0]
        if file not in handles:
          handles[file] = stack.enter_context(safe_open(file, framework="numpy"))
        arrays.append(handles[file].get_tensor(name))  # BF16 too, in safetensors >= 0.8
      yield rule.canonical, rule.to_canonical(*arrays)
      bar.update()
