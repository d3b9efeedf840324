"""`load_model`: a GPT-OSS checkpoint directory -> a `GptOss` on the default device.

Three kinds of directory load: the HF layout, the ``original/`` layout (both safetensors, read
tensor by tensor, experts packed into the kernel layout on the way) and a directory written by
`save_packed` (orbax, already packed; the fastest to load).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from mxfp4_jax import checkpoint as ckpt
from mxfp4_jax.mxfp4.layout import pack
from mxfp4_jax.model.config import GptOssConfig
from mxfp4_jax.model.gpt_oss import GptOss

PACKED_MARKER = "mxfp4_jax.json"  # beside the orbax params of a packed checkpoint
# 3: the unembedding is [D, V] (2: [V, D]); 2: the router weight is [E, D], as the checkpoints
# store it (1: [D, E])
PACKED_FORMAT = 3


def _abstract_model(cfg: GptOssConfig) -> GptOss:
  return nnx.eval_shape(lambda: GptOss(cfg, rngs=nnx.Rngs(0)))


def _dense_target(model: GptOss, name: str):
  """The parameter a canonical dense tensor fills (see `mxfp4_jax.checkpoint.names`)."""
  if not name.startswith("layers."):
    return {"embedding": model.embedding, "norm": model.norm.scale,
            "unembedding": model.unembedding}[name]
  _, index, rest = name.split(".", 2)
  if not index.isdigit():  # "layers.-1..." would fill the last layer
    raise ValueError(index)
  block = model.layers[int(index)]
  return {
      "attn_norm": block.attn_norm.scale, "mlp_norm": block.mlp_norm.scale,
      "qkv.weight": block.attn.qkv_weight, "qkv.bias": block.attn.qkv_bias,
      "sinks": block.attn.sinks, "out.weight": block.attn.out_weight,
      "out.bias": block.attn.out_bias, "router.weight": block.mlp.router_weight,
      "router.bias": block.mlp.router_bias,
  }[rest]


def from_canonical(cfg: GptOssConfig, tensors) -> GptOss:
  """Builds the model from ``(canonical name, host array)`` pairs, one tensor at a time.

  Dense tensors go to the device in the parameter's dtype; each expert projection is packed
  into the kernel layout as soon as its blocks, scales and bias have all arrived.
  """
  model = _abstract_model(cfg)
  experts: dict[tuple[int, str], dict[str, np.ndarray]] = {}
  for name, array in tensors:
    parts = name.split(".")
    if len(parts) == 4 and parts[2] in ("gate_up", "down"):
      if not (parts[1].isdigit() and parts[3] in ("blocks", "scales", "bias")):
        raise ckpt.CheckpointError(f"{name}: not a parameter of this GPT-OSS")
      key = (int(parts[1]), parts[2])
      if not key[0] < cfg.num_layers:
        raise ckpt.CheckpointError(f"{name}: not a parameter of this GPT-OSS "
                                   f"({cfg.num_layers} layers)")
      pending = experts.setdefault(key, {})
      pending[parts[3]] = array
      if len(pending) == 3:
        _set_experts(getattr(model.layers[key[0]].mlp, key[1]), pending, ".".join(parts[:3]))
        del experts[key]
      continue
    try:
      target = _dense_target(model, name)
    except (KeyError, IndexError, ValueError):
      raise ckpt.CheckpointError(f"{name}: not a parameter of this GPT-OSS") from None
    if tuple(array.shape) != tuple(target.shape):
      raise ckpt.CheckpointError(f"{name}: shape {tuple(array.shape)}, the model expects "
                                 f"{tuple(target.shape)}")
    target.set_value(jnp.asarray(array, target.dtype))
  if experts:
    (layer, projection), given = min(experts.items())
    raise ckpt.CheckpointError(
        f"checkpoint left {len(experts)} expert projection(s) incomplete, first "
        f"layers.{layer}.{projection}: has {sorted(given)} of ['bias', 'blocks', 'scales']")
  missing = [jax.tree_util.keystr(path, simple=True, separator=".").replace(".value", "", 1)
             for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model))
             if isinstance(leaf, jax.ShapeDtypeStruct)]
  if missing:
    raise ckpt.CheckpointError(f"checkpoint left {len(missing)} parameter(s) unset, first "
                               f"{missing[0]}")
  return model


def _set_experts(variable, parts: dict[str, np.ndarray], name: str) -> None:
  """Packs one expert projection's blocks, scales and bias into ``variable`` (its abstract value
  gives the shapes the config implies); a bad scale byte or a shape off the config is a
  CheckpointError naming the projection."""
  try:
    packed = pack(parts["blocks"], parts["scales"], parts["bias"].astype(np.float32),
                  swiglu_halves=name.endswith("gate_up"))
  except (TypeError, ValueError) as e:  # a dtype or a scale byte pack refuses
    raise ckpt.CheckpointError(f"{name}: {e}") from None
  shapes = lambda tree: jax.tree.map(lambda leaf: tuple(leaf.shape), tree)
  if shapes(packed) != shapes(variable.get_value()):
    raise ckpt.CheckpointError(f"{name}: blocks {tuple(parts['blocks'].shape)} do not fit the "
                               f"config's experts {variable.get_value()}")
  variable.set_value(packed)


def save_packed(model: GptOss, path) -> pathlib.Path:
  """Writes the packed parameters with orbax, and the config beside them."""
  path = pathlib.Path(path).absolute()
  path.mkdir(parents=True, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path / "params", nnx.state(model), force=True)
  checkpointer.wait_until_finished()
  # SwiGLU's alpha is no checkpoint hyperparameter (GPT-OSS fixes it), but a model built with
  # another must come back with it.
  meta = dict(format=PACKED_FORMAT,
              hparams=dict(model.cfg.hparams(), swiglu_alpha=model.cfg.swiglu_alpha))
  (path / PACKED_MARKER).write_text(json.dumps(meta, indent=2) + "\n")
  return path


def _packed_config(path: pathlib.Path, runtime: dict) -> GptOssConfig:
  """The config in a packed checkpoint's marker, with the ``runtime`` fields."""
  marker = path / PACKED_MARKER
  try:
    meta = json.loads(marker.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ckpt.CheckpointError(f"{marker}: not valid JSON ({e})") from None
  except OSError as e:
    raise ckpt.CheckpointError(f"{marker}: unreadable ({e.strerror})") from None
  if not isinstance(meta, dict) or meta.get("format") != PACKED_FORMAT:
    found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
    raise ckpt.CheckpointError(f"{marker}: format {found!r}, this version reads {PACKED_FORMAT}")
  if not isinstance(meta.get("hparams"), dict):
    raise ckpt.CheckpointError(f"{marker}: no 'hparams' object")
  try:
    return GptOssConfig.from_dict({**meta["hparams"], **runtime})
  except (TypeError, ValueError) as e:
    raise ckpt.CheckpointError(f"{marker}: hparams: {e}") from None


def _restore_packed(path: pathlib.Path, cfg: GptOssConfig) -> GptOss:
  params, marker = path.absolute() / "params", path.absolute() / PACKED_MARKER  # orbax: absolute
  if not params.is_dir():
    raise ckpt.CheckpointError(f"{params}: missing (the packed parameters {marker} describes)")
  graphdef, abstract_state = nnx.split(_abstract_model(cfg))
  checkpointer = ocp.StandardCheckpointer()
  with _unreadable_as_checkpoint_error(params):
    stored = checkpointer.metadata(params).item_metadata
  _check_stored_shapes(stored, abstract_state, str(params), str(marker))
  with _unreadable_as_checkpoint_error(params):
    return nnx.merge(graphdef, checkpointer.restore(params, abstract_state))


@contextlib.contextmanager
def _unreadable_as_checkpoint_error(params: pathlib.Path):
  """Orbax and TensorStore raise their own exceptions for a damaged directory (a data file
  missing or cut short), with pages of detail: one line names the directory instead."""
  try:
    yield
  except Exception as e:  # noqa: BLE001 (their exception types are not part of their API)
    detail = (str(e).splitlines() or [type(e).__name__])[0]
    detail = detail.partition(". See full TensorStore details")[0][:200]
    raise ckpt.CheckpointError(f"{params}: unreadable packed parameters ({detail})") from None


def _check_stored_shapes(stored, expected, params: str, marker: str) -> None:
  """Orbax's own errors for parameters that differ from the model the marker's hparams build
  dump whole trees; this one names the first parameter."""
  def shapes(tree):  # "layers.0.attn.sinks" -> shape
    named = {}
    for keys, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      name = ".".join(str(getattr(k, "key", getattr(k, "name", k))) for k in keys)
      named[name.removesuffix(".value")] = tuple(leaf.shape)
    return named
  on_disk, wanted = shapes(stored), shapes(expected)
  if not on_disk:  # orbax logs a warning and gives no tree where its metadata is unreadable
    raise ckpt.CheckpointError(f"{params}: no parameters on disk (orbax's metadata missing or "
                               "unreadable)")
  for name in sorted(on_disk.keys() | wanted.keys()):
    if on_disk.get(name) != wanted.get(name):
      raise ckpt.CheckpointError(
          f"{params}: {name} is {on_disk.get(name, 'missing')} on disk, the hparams in {marker} "
          f"make it {wanted.get(name, 'no parameter')}")


def checkpoint_config(path: str | os.PathLike, *, dtype: str = "bfloat16",
                      moe_backend: str = "auto", moe_interpret: bool = False,
                      attention_backend: str = "auto", router_backend: str = "auto"
                      ) -> GptOssConfig:
  """The config of the model `load_model` would build from ``path`` with these arguments, read
  from the checkpoint's config alone: what a run asks of the model (a context length, a
  backend) can be checked before the minutes its weights take to load."""
  if not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"path must be a checkpoint directory (a str or path), got {path!r:.60}")
  path = pathlib.Path(path)
  try:
    dtype = str(jnp.dtype(dtype))
  except TypeError:
    raise ValueError(f"dtype must be 'bfloat16' or 'float32', got {dtype!r}") from None
  runtime = dict(dtype=dtype, moe_backend=moe_backend, moe_interpret=moe_interpret,
                 attention_backend=attention_backend, router_backend=router_backend)
  if (path / PACKED_MARKER).exists():
    return _packed_config(path.absolute(), runtime)
  return GptOssConfig.from_dict({**ckpt.read_hparams(path), **runtime})


def load_model(path: str | os.PathLike, *, dtype: str = "bfloat16", moe_backend: str = "auto",
               moe_interpret: bool = False, attention_backend: str = "auto",
               router_backend: str = "auto", progress: bool = True) -> GptOss:
  """Loads a GPT-OSS checkpoint: HF layout, ``original/`` layout, or one saved by `save_packed`.

  ``dtype="float32"`` computes everything in float32 (the experts through the jnp reference):
  the mode in which the model is proven against reference implementations. The backends are
  `GptOssConfig`'s. Problems in the checkpoint raise `mxfp4_jax.checkpoint.CheckpointError`
  naming the file, key or tensor.
  """
  cfg = checkpoint_config(path, dtype=dtype, moe_backend=moe_backend, moe_interpret=moe_interpret,
                          attention_backend=attention_backend, router_backend=router_backend)
  path = pathlib.Path(path)
  if (path / PACKED_MARKER).exists():
    return _restore_packed(path, cfg)
  return from_canonical(cfg, ckpt.iter_canonical(path, progress=progress))
