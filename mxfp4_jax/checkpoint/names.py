"""One canonical naming of GPT-OSS weights, and its mapping to the two on-disk layouts.

The model sees a flat dict of numpy arrays under canonical names whichever layout the weights came
from. Dense linears are ``W[in, out]`` so that the math reads ``x @ W``; the fused attention
projection is one ``qkv`` matrix whose columns are q | k | v; the unembedding is ``[D, V]`` too
(XLA's batch-1 product reads it faster that way round than as stored). One stays as stored,
``[out, in]``: the router's weight ``[E, D]``, whose product takes it as ``x @ W.T``. MXFP4 expert
tensors stay exactly as stored (blocks ``[E, N, K/32, 16]``, scales ``[E, N, K/32]``, input dim K
last): the model packs them into the kernel layout itself, so their bytes pass through untouched.
Norm scales are float32 in the canonical dict (the HF files store bf16, the original ones float32)
so that both layouts load to the same dict; other float tensors keep their stored dtype (bf16 in
real checkpoints).

Each canonical tensor has a `Rule` per layout: the disk tensors it is made of, their shapes, and
the conversions both ways, so the loader and the test-checkpoint writer share one table.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mxfp4_jax.mxfp4 import format as fmt

LAYOUTS = ("hf", "original")
FLOAT = "float"  # any float dtype on disk
MXFP4 = "mxfp4"  # uint8 bytes in the checkpoint MXFP4 layout (blocks or scales)


def is_norm(name: str) -> bool:
  return name == "norm" or name.endswith("_norm")


def canonical_shapes(hparams: dict,
                     num_layers: int | None = None) -> dict[str, tuple[tuple[int, ...], str]]:
  """Canonical name -> (shape, kind), in load order, for the first ``num_layers`` layers."""
  d, v, e = hparams["hidden_size"], hparams["vocab_size"], hparams["num_experts"]
  inter = hparams["intermediate_size"]
  q = hparams["num_heads"] * hparams["head_dim"]
  kv = hparams["num_kv_heads"] * hparams["head_dim"]
  blocks_d, blocks_i = d // fmt.BLOCK_SIZE, inter // fmt.BLOCK_SIZE
  b = fmt.BYTES_PER_BLOCK
  shapes = {"embedding": ((v, d), FLOAT)}
  for i in range(hparams["num_layers"] if num_layers is None else num_layers):
    p = f"layers.{i}."
    shapes.update({
        p + "attn_norm": ((d,), FLOAT),
        p + "qkv.weight": ((d, q + 2 * kv), FLOAT),
        p + "qkv.bias": ((q + 2 * kv,), FLOAT),
        p + "sinks": ((hparams["num_heads"],), FLOAT),
        p + "out.weight": ((q, d), FLOAT),
        p + "out.bias": ((d,), FLOAT),
        p + "mlp_norm": ((d,), FLOAT),
        p + "router.weight": ((e, d), FLOAT),  # a torch Linear's [out, in], as stored
        p + "router.bias": ((e,), FLOAT),
        p + "gate_up.blocks": ((e, 2 * inter, blocks_d, b), MXFP4),
        p + "gate_up.scales": ((e, 2 * inter, blocks_d), MXFP4),
        p + "gate_up.bias": ((e, 2 * inter), FLOAT),
        p + "down.blocks": ((e, d, blocks_i, b), MXFP4),
        p + "down.scales": ((e, d, blocks_i), MXFP4),
        p + "down.bias": ((e, d), FLOAT),
    })
  shapes["norm"] = ((d,), FLOAT)
  shapes["unembedding"] = ((d, v), FLOAT)
  return shapes


# --- conversions between one canonical tensor and its disk tensors ------------------------------


class _Same:
  """Stored as is."""

  def to_canonical(self, a):
    return a

  def to_disk(self, a):
    return (a,)

  def disk_shapes(self, shape):
    return (shape,)


class _Float32(_Same):
  """Norm scales: float32 in the canonical dict whatever the file holds."""

  def to_canonical(self, a):
    return a.astype(np.float32)


class _Transposed(_Same):
  """A torch Linear weight ``[out, in]`` <-> ``W[in, out]``."""

  def to_canonical(self, a):
    return np.ascontiguousarray(a.T)

  def to_disk(self, a):
    return (np.ascontiguousarray(a.T),)

  def disk_shapes(self, shape):
    return (shape[::-1],)


@dataclasses.dataclass(frozen=True)
class _Stacked:
  """HF's separate q, k, v projections <-> the fused qkv: rows stacked, transposed if a weight."""

  sizes: tuple[int, ...]
  transpose: bool

  def to_canonical(self, *parts):
    w = np.concatenate(parts, axis=0)  # [Q + 2 KV, ...]
    return np.ascontiguousarray(w.T) if self.transpose else w

  def to_disk(self, a):
    w = a.T if self.transpose else a
    return tuple(np.ascontiguousarray(p) for p in np.split(w, np.cumsum(self.sizes)[:-1], axis=0))

  def disk_shapes(self, shape):
    rest = shape[:-1][::-1] if self.transpose else shape[1:]
    return tuple((size, *rest) for size in self.sizes)


@dataclasses.dataclass(frozen=True)
class Rule:
  """How one canonical tensor is stored in one layout."""

  canonical: str
  shape: tuple[int, ...]
  kind: str
  disk: tuple[str, ...]
  disk_shapes: tuple[tuple[int, ...], ...]
  convert: object  # one of the conversion classes above

  def to_canonical(self, *arrays: np.ndarray) -> np.ndarray:
    return self.convert.to_canonical(*arrays)

  def to_disk(self, array: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(self.disk, self.convert.to_disk(array)))


def _hf_layer(i: int, sizes: tuple[int, ...]) -> dict[str, tuple[tuple[str, ...], object]]:
  p, a, m = f"model.layers.{i}.", f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
  return {
      "attn_norm": ((p + "input_layernorm.weight",), _Float32()),
      "qkv.weight": (tuple(f"{a}{x}_proj.weight" for x in "qkv"), _Stacked(sizes, True)),
      "qkv.bias": (tuple(f"{a}{x}_proj.bias" for x in "qkv"), _Stacked(sizes, False)),
      "sinks": ((a + "sinks",), _Same()),
      "out.weight": ((a + "o_proj.weight",), _Transposed()),
      "out.bias": ((a + "o_proj.bias",), _Same()),
      "mlp_norm": ((p + "post_attention_layernorm.weight",), _Float32()),
      "router.weight": ((m + "router.weight",), _Same()),
      "router.bias": ((m + "router.bias",), _Same()),
      "gate_up.blocks": ((m + "experts.gate_up_proj_blocks",), _Same()),
      "gate_up.scales": ((m + "experts.gate_up_proj_scales",), _Same()),
      "gate_up.bias": ((m + "experts.gate_up_proj_bias",), _Same()),
      "down.blocks": ((m + "experts.down_proj_blocks",), _Same()),
      "down.scales": ((m + "experts.down_proj_scales",), _Same()),
      "down.bias": ((m + "experts.down_proj_bias",), _Same()),
  }


def _original_layer(i: int) -> dict[str, tuple[tuple[str, ...], object]]:
  a, m = f"block.{i}.attn.", f"block.{i}.mlp."
  return {
      "attn_norm": ((a + "norm.scale",), _Float32()),
      "qkv.weight": ((a + "qkv.weight",), _Transposed()),
      "qkv.bias": ((a + "qkv.bias",), _Same()),
      "sinks": ((a + "sinks",), _Same()),
      "out.weight": ((a + "out.weight",), _Transposed()),
      "out.bias": ((a + "out.bias",), _Same()),
      "mlp_norm": ((m + "norm.scale",), _Float32()),
      "router.weight": ((m + "gate.weight",), _Same()),
      "router.bias": ((m + "gate.bias",), _Same()),
      "gate_up.blocks": ((m + "mlp1_weight.blocks",), _Same()),
      "gate_up.scales": ((m + "mlp1_weight.scales",), _Same()),
      "gate_up.bias": ((m + "mlp1_bias",), _Same()),
      "down.blocks": ((m + "mlp2_weight.blocks",), _Same()),
      "down.scales": ((m + "mlp2_weight.scales",), _Same()),
      "down.bias": ((m + "mlp2_bias",), _Same()),
  }


_GLOBALS = {
    "hf": {"embedding": ("model.embed_tokens.weight", _Same()),
           "norm": ("model.norm.weight", _Float32()),
           "unembedding": ("lm_head.weight", _Transposed())},
    "original": {"embedding": ("embedding.weight", _Same()),
                 "norm": ("norm.scale", _Float32()),
                 "unembedding": ("unembedding.weight", _Transposed())},
}


def layout_rules(hparams: dict, layout: str, num_layers: int | None = None) -> list[Rule]:
  """The `Rule` of every canonical tensor of the first ``num_layers`` layers, in load order."""
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  q, kv = (hparams[k] * hparams["head_dim"] for k in ("num_heads", "num_kv_heads"))
  sizes = (q, kv, kv)
  rules, layer_table, table_layer = [], None, -1
  for name, (shape, kind) in canonical_shapes(hparams, num_layers).items():
    if name.startswith("layers."):
      _, index, suffix = name.split(".", 2)
      if int(index) != table_layer:
        table_layer = int(index)
        layer_table = (_hf_layer(table_layer, sizes) if layout == "hf"
                       else _original_layer(table_layer))
      disk, convert = layer_table[suffix]
    else:
      disk_name, convert = _GLOBALS[layout][name]
      disk = (disk_name,)
    rules.append(Rule(name, shape, kind, disk, convert.disk_shapes(shape), convert))
  return rules


def to_disk(canonical: dict[str, np.ndarray], hparams: dict, layout: str) -> dict[str, np.ndarray]:
  """A canonical dict -> the disk tensors of ``layout`` (dtypes unchanged)."""
  disk = {}
  for rule in layout_rules(hparams, layout):
    disk.update(rule.to_disk(canonical[rule.canonical]))
  return disk
