"""The kernel layout: how MXFP4 expert weights are stored for the grouped matmul.

This is the one contract shared by the packer, the Pallas kernel, the reference and the tests, and
it is what checkpoints of packed parameters persist. Weights are packed once, at load time.

For expert ``e``, output feature ``n`` and input feature ``k`` (the math is ``out = x @ W[e]``):

* ``values[e, t, n, i]`` (uint8, shape ``[E, K_pad / 64, N, 32]``) holds, for ``j =
  kernel_byte_order(i)``, the codes of ``k = 64 t + j`` in its LOW nibble and ``k = 64 t + 32 + j``
  in its HIGH nibble. One kernel K step reads a ``[block_n, 32]`` byte tile that is contiguous in
  memory; its low nibbles are one 32-value scale block and its high nibbles the next, so each
  half needs a single scale per row and no in-register interleave. The table-lookup decode reads
  the same bytes as ``[block_n, 8]`` little-endian 32-bit words (byte ``4i`` lowest in word
  ``i``): a view, not a second layout.
* Within a row's 32 bytes, position ``i = 8 a + 2 b + c`` (``a, b < 4``, ``c < 2``) holds byte
  ``j = 8 b + 2 a + c`` of the plain order (`kernel_byte_order`, its own inverse). Why: a thread
  of a Hopper wgmma (or mma) register operand holds K values ``2 a, 2 a + 1, 2 a + 8, 2 a + 9``
  (``a`` = lane % 4) of each 16-wide K step, so in this order its bytes of a row are 8 adjacent
  ones: one 64-bit shared-memory load instead of four 16-bit loads and the byte permutes that
  reassemble them (sm_90 disassembly of the decode-size K loop: 421 -> 363 instructions).
* ``scales[e, b, n]`` (uint8, shape ``[E, K_pad / 32, N]``): the E8M0 scale of ``k`` in
  ``[32 b, 32 b + 32)``; a ``[block_n]`` row of them is one contiguous load.
* ``K_pad`` is ``K`` rounded up to 64; the padding holds zero codes with scale 127.
* ``bias[e, n]`` (float32, optional): the layer's bias, in the same row order as the weights.
* ``swiglu_halves``: for the fused gate_up kernel the checkpoint's interleaved columns
  (glu = even ``n``, linear = odd ``n``) are reordered so that ``n < N/2`` is glu and ``n >= N/2``
  is linear (`deinterleave_swiglu`), for weights and bias alike.

In-kernel decodes (`format.e2m1_to_bf16_bits` and the PTX forms beside it, which give the same
bits) are exact for scale bytes in ``[KERNEL_SCALE_MIN, KERNEL_SCALE_MAX]`` on blocks that hold
a non-zero value; `pack` checks it (and the checkpoint loaders through it), and stores a scale
byte above the range on an all-zero block as ``KERNEL_SCALE_MAX`` (the bf16x2 decode would make
that block's zeros NaN; `unpack` then gives that byte back, not the original). A `PackedMXFP4`
built by hand is checked for shapes and dtypes at each call (`check_packed`) but not for its
scale bytes, which would cost the kernel a copy of every scale to the host per call: it decodes
a byte outside the range to NaN or a wrong power of two. (Called eagerly, the jnp reference's
`dequantize_packed` reads the scales on the host anyway, and rejects an E8M0 NaN byte.)
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from mxfp4_jax.argcheck import is_concrete, is_int
from mxfp4_jax.mxfp4 import format as fmt

K_TILE = 2 * fmt.BLOCK_SIZE  # values per packed K step
BYTES_PER_K_TILE = K_TILE // 2
NEUTRAL_SCALE = fmt.SCALE_BIAS  # scale byte of padding blocks (2**0)


def kernel_byte_order(tile):
  """``[..., 32]`` K-tile bytes (or their decoded values) between the plain order and the
  kernel's (module docstring); the same permutation both ways. Runs inside kernels too."""
  lead = tile.shape[:-1]
  quads = tile.reshape(*lead, 4, 4, 2)
  axes = tuple(range(len(lead)))
  return quads.transpose(*axes, len(lead) + 1, len(lead), len(lead) + 2).reshape(tile.shape)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedMXFP4:
  """MXFP4 weights of ``E`` experts, each ``[K, N]``, in the kernel layout (module docstring)."""

  values: jax.Array  # [E, K_pad / 64, N, 32] uint8
  scales: jax.Array  # [E, K_pad / 32, N] uint8
  bias: jax.Array | None  # [E, N] float32 in the packed row order, or None
  in_features: int = dataclasses.field(metadata=dict(static=True))
  swiglu_halves: bool = dataclasses.field(default=False, metadata=dict(static=True))

  @property
  def num_experts(self) -> int:
    return self.values.shape[0]

  @property
  def out_features(self) -> int:
    return self.values.shape[2]

  @property
  def padded_in_features(self) -> int:
    return self.values.shape[1] * K_TILE

  @property
  def nbytes(self) -> int:
    return self.values.size + self.scales.size

  def expert_nbytes(self) -> int:
    """HBM bytes of one expert's weights: what a kernel reads per expert that gets rows."""
    return self.nbytes // self.num_experts

  def __repr__(self) -> str:
    shape = getattr(self.values, "shape", None)  # leaves may be anything under tree_map
    return (f"PackedMXFP4(values{list(shape) if shape else '=?'}, in={self.in_features}, "
            f"swiglu_halves={self.swiglu_halves}, bias={self.bias is not None})")


def check_packed(w: PackedMXFP4, name: str = "w") -> None:
  """One-line errors for a packed weight whose arrays break the contract."""
  if not isinstance(w, PackedMXFP4):
    raise TypeError(f"{name} must be a PackedMXFP4 (see mxfp4_jax.mxfp4.pack), got {type(w).__name__}")
  v, s = w.values, w.scales
  if v.dtype != jnp.uint8 or s.dtype != jnp.uint8:
    raise TypeError(f"{name}.values and {name}.scales must be uint8, got {v.dtype} and {s.dtype}")
  if v.ndim != 4 or v.shape[-1] != BYTES_PER_K_TILE:
    raise ValueError(f"{name}.values must have shape [E, K_pad/64, N, 32], got {tuple(v.shape)}")
  expected = (v.shape[0], 2 * v.shape[1], v.shape[2])
  if tuple(s.shape) != expected:
    raise ValueError(f"{name}.scales must have shape {expected}, got {tuple(s.shape)}")
  if 0 in v.shape:
    raise ValueError(f"{name}.values must have at least one expert, K tile and output feature, "
                     f"got shape {tuple(v.shape)}")
  if w.bias is not None and (tuple(w.bias.shape) != (v.shape[0], v.shape[2])
                             or not jnp.issubdtype(w.bias.dtype, jnp.floating)):
    raise ValueError(f"{name}.bias must be a float array of shape {(v.shape[0], v.shape[2])}, "
                     f"got {w.bias.dtype}{tuple(w.bias.shape)}")
  if (not is_int(w.in_features) or w.in_features % fmt.BLOCK_SIZE
      or -(-w.in_features // K_TILE) != v.shape[1]):
    raise ValueError(f"{name}.in_features={w.in_features!r} does not fit values of shape "
                     f"{tuple(v.shape)} (a multiple of {fmt.BLOCK_SIZE} filling the last of "
                     f"{v.shape[1]} K tiles at least half)")
  if type(w.swiglu_halves) is not bool:
    raise TypeError(f"{name}.swiglu_halves must be a bool, got {w.swiglu_halves!r}")
  if w.swiglu_halves and v.shape[2] % 2:
    raise ValueError(f"{name} has swiglu_halves=True but an odd N={v.shape[2]} (glu and linear "
                     "halves need an even N)")


def _check_kernel_scale_range(blocks, scales, where: str) -> None:
  """Scale bytes of blocks holding a non-zero value must be ones the kernel decodes exactly.

  Runs on the caller's arrays (host numpy when loading a checkpoint, so nothing crosses to the
  device and back); skipped under a trace.
  """
  if not (is_concrete(blocks) and is_concrete(scales)):
    return
  nonzero_block = fmt.holds_nonzero(np.asarray(blocks))
  s = np.asarray(scales)
  bad = nonzero_block & ((s < fmt.KERNEL_SCALE_MIN) | (s > fmt.KERNEL_SCALE_MAX))
  if bad.any():
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
        f"{where}: scale byte {int(s[index])} at {index} is outside [{fmt.KERNEL_SCALE_MIN}, "
        f"{fmt.KERNEL_SCALE_MAX}], the range the kernel decodes exactly "
        "(block scales 2**-125..2**1)")


def pack(blocks, scales, bias=None, *, swiglu_halves: bool = False) -> PackedMXFP4:
  """Checkpoint layout (``blocks[E, N, K/32, 16]``, ``scales[E, N, K/32]``, ``bias[E, N]``)
  -> `PackedMXFP4`.

  Runs on host or device arrays and under ``jit`` (the scale-range check needs concrete values
  and is skipped under a trace). With ``swiglu_halves`` the rows are first reordered by
  `deinterleave_swiglu`.
  """
  if type(swiglu_halves) is not bool:
    raise TypeError(f"pack: swiglu_halves must be a bool, got {swiglu_halves!r}")
  given = blocks, scales  # host arrays stay on the host for the range check
  blocks, scales = jnp.asarray(blocks), jnp.asarray(scales)
  fmt.check_blocks_and_scales(blocks, scales, "pack:")
  if blocks.ndim != 4 or 0 in blocks.shape:
    raise ValueError(f"pack: blocks must have shape [E, N, K/32, 16] with E, N, K/32 >= 1, got "
                     f"{tuple(blocks.shape)}")
  _check_kernel_scale_range(*given, "pack")
  # An all-zero block is zeros under any scale, but the bf16x2 decode's factor for a byte above
  # KERNEL_SCALE_MAX is no finite bf16 (129 needs 2**128), and 0 * inf is NaN.
  scales = jnp.where(~fmt.holds_nonzero(blocks) & (scales > fmt.KERNEL_SCALE_MAX),
                     jnp.uint8(fmt.KERNEL_SCALE_MAX), scales)
  num_experts, n, num_blocks, _ = blocks.shape
  if swiglu_halves:
    if n % 2:
      raise ValueError(f"pack: a SwiGLU gate_up weight needs an even N, got {n}")
    blocks, scales = deinterleave_swiglu(blocks, axis=1), deinterleave_swiglu(scales, axis=1)
  if bias is not None:
    bias = jnp.asarray(bias)
    if tuple(bias.shape) != (num_experts, n) or not jnp.issubdtype(bias.dtype, jnp.floating):
      raise ValueError(f"pack: bias must be a float array of shape {(num_experts, n)}, got "
                       f"{bias.dtype}{tuple(bias.shape)}")
    if is_concrete(bias) and not bool(jnp.all(jnp.isfinite(bias))):
      raise ValueError("pack: bias holds NaN or infinity")
    bias = (deinterleave_swiglu(bias, axis=1) if swiglu_halves else bias).astype(jnp.float32)
  codes = fmt.blocks_to_codes(blocks)  # [E, N, K/32, 32]

  pad = (-num_blocks) % 2
  if pad:
    codes = jnp.pad(codes, ((0, 0), (0, 0), (0, pad), (0, 0)))
    scales = jnp.pad(scales, ((0, 0), (0, 0), (0, pad)), constant_values=NEUTRAL_SCALE)
  codes = codes.reshape(num_experts, n, -1, 2, fmt.BLOCK_SIZE)
  values = kernel_byte_order(fmt.join_nibbles(codes[..., 0, :], codes[..., 1, :]))  # [E, N, K_pad/64, 32]
  return PackedMXFP4(
      values=jnp.transpose(values, (0, 2, 1, 3)),
      scales=jnp.transpose(scales, (0, 2, 1)),
      bias=bias,
      in_features=num_blocks * fmt.BLOCK_SIZE,
      swiglu_halves=swiglu_halves,
  )


def unpack(w: PackedMXFP4) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  """`PackedMXFP4` -> checkpoint layout (blocks, scales, bias): the inverse of `pack`, byte for
  byte, except that an all-zero block's scale byte above `KERNEL_SCALE_MAX` comes back as that
  maximum (`pack` stores it so; the block's values are zeros under either)."""
  check_packed(w)
  low, high = fmt.split_nibbles(kernel_byte_order(jnp.transpose(w.values, (0, 2, 1, 3))))  # [E, N, K_pad/64, 32]
  codes = jnp.stack([low, high], axis=3).reshape(w.num_experts, w.out_features, -1, fmt.BLOCK_SIZE)
  num_blocks = w.in_features // fmt.BLOCK_SIZE
  blocks = fmt.codes_to_blocks(codes[:, :, :num_blocks])
  scales = jnp.transpose(w.scales, (0, 2, 1))[:, :, :num_blocks]
  bias = w.bias
  if w.swiglu_halves:
    blocks, scales = interleave_swiglu(blocks, axis=1), interleave_swiglu(scales, axis=1)
    bias = None if bias is None else interleave_swiglu(bias, axis=1)
  return blocks, scales, bias


def dequantize_packed(w: PackedMXFP4, dtype=jnp.float32) -> jax.Array:
  """`PackedMXFP4` -> dense ``[E, K, N]`` in the packed row order (glu half first if so packed)."""
  check_packed(w)
  fmt.check_float_dtype("dequantize_packed: dtype", dtype)
  low, high = fmt.split_nibbles(kernel_byte_order(w.values))  # [E, K_pad/64, N, 32]
  codes = jnp.stack([low, high], axis=3)  # [E, K_pad/64, N, 2, 32]
  values = fmt.decode_codes(codes) * fmt.decode_scales(
      w.scales.reshape(w.num_experts, -1, 2, w.out_features).transpose(0, 1, 3, 2))[..., None]
  dense = values.transpose(0, 1, 3, 4, 2).reshape(w.num_experts, w.padded_in_features, w.out_features)
  return dense[:, : w.in_features].astype(dtype)


def _even_axis(a, axis: int, name: str) -> jax.Array:
  a = jnp.asarray(a)
  if not (is_int(axis) and -a.ndim <= axis < a.ndim):
    raise ValueError(f"{name}: axis {axis!r} is not an axis of shape {tuple(a.shape)}")
  if a.shape[axis] % 2:
    raise ValueError(f"{name}: axis {axis} must have an even length (glu and linear halves), "
                     f"got shape {tuple(a.shape)}")
  return a


def deinterleave_swiglu(a, axis: int = -1):
  """Interleaved (glu, linear, glu, linear, ...) along ``axis`` -> (all glu, then all linear)."""
  a = _even_axis(a, axis, "deinterleave_swiglu")
  return jnp.concatenate([jnp.take(a, jnp.arange(0, a.shape[axis], 2), axis=axis),
                          jnp.take(a, jnp.arange(1, a.shape[axis], 2), axis=axis)], axis=axis)


def interleave_swiglu(a, axis: int = -1):
  """The inverse of `deinterleave_swiglu`."""
  a = jnp.moveaxis(_even_axis(a, axis, "interleave_swiglu"), axis, 0)
  half = a.shape[0] // 2
  out = jnp.stack([a[:half], a[half:]], axis=1).reshape(a.shape)
  return jnp.moveaxis(out, 0, axis)


def packed_shapes(num_experts: int, in_features: int, out_features: int) -> dict[str, tuple[int, ...]]:
  """Array shapes of a packed weight, for building weights directly on a device."""
  k_tiles = math.ceil(in_features / K_TILE)
  return dict(values=(num_experts, k_tiles, out_features, BYTES_PER_K_TILE),
              scales=(num_experts, 2 * k_tiles, out_features))


@functools.partial(jax.jit, static_argnums=1)
def _random_bytes(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform uint8 of ``shape`` (last axis a multiple of 4), drawn one leading index at a time."""
  def one(k):
    words = jax.random.bits(k, (*shape[1:-1], shape[-1] // 4), jnp.uint32)
    return jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(shape[1:])
  return jax.lax.map(one, jax.random.split(key, shape[0]))


# E8M0 scale bytes of random weights, both ends included: about GPT-OSS's range (factors 2**-9 to
# 2**-3). Speed does not depend on them.
RANDOM_SCALE_RANGE = (118, 124)


def random_packed(key: jax.Array, num_experts: int, in_features: int, out_features: int, *,
                  swiglu_halves: bool = False,
                  scale_range: tuple[int, int] = RANDOM_SCALE_RANGE) -> PackedMXFP4:
  """Random weights built directly in the packed layout, on the default device.

  Codes are uniform over all 16 E2M1 codes and scale bytes uniform in ``scale_range`` (both
  ends included); speed does not depend on the values. Nothing passes through host memory.
  A K padded up to a whole tile gets the layout's padding (zero codes, scale 127), as `pack`'s.
  Every weight gets a float32 bias, normal with standard deviation 0.1.
  """
  if type(swiglu_halves) is not bool:
    raise TypeError(f"random_packed: swiglu_halves must be a bool, got {swiglu_halves!r}")
  if not is_int(in_features) or in_features <= 0 or in_features % fmt.BLOCK_SIZE:
    raise ValueError(f"random_packed: in_features={in_features!r} must be a positive multiple of "
                     f"{fmt.BLOCK_SIZE}")
  if (not (is_int(num_experts) and is_int(out_features)) or num_experts < 1 or out_features < 1
      or (swiglu_halves and out_features % 2)):
    raise ValueError(f"random_packed: needs ints num_experts, out_features >= 1 (out_features "
                     f"even with swiglu_halves), got {num_experts!r} and {out_features!r}")
  low, high = scale_range
  if not fmt.KERNEL_SCALE_MIN <= low <= high <= fmt.KERNEL_SCALE_MAX:
    raise ValueError(f"random_packed: scale_range={scale_range} must be (low, high) with "
                     f"{fmt.KERNEL_SCALE_MIN} <= low <= high <= {fmt.KERNEL_SCALE_MAX}, the bytes "
                     "the kernel decodes exactly")
  shapes = packed_shapes(num_experts, in_features, out_features)
  k_values, k_scales, k_bias = jax.random.split(key, 3)
  # One expert at a time, as 32-bit words viewed as bytes: a single draw of all values holds
  # several times the packed size in temporaries (4 GB per 120b gate_up layer), more than an
  # 80 GB GPU has to spare beside that model.
  values = _random_bytes(k_values, shapes["values"])
  scales = jax.random.randint(k_scales, shapes["scales"], low, high + 1,
                              jnp.int32).astype(jnp.uint8)
  if in_features % K_TILE:  # the last tile's high nibbles are its padded half
    values = values.at[:, -1].set(values[:, -1] & 0x0F)
    scales = scales.at[:, -1].set(NEUTRAL_SCALE)
  bias = jax.random.normal(k_bias, (num_experts, out_features), jnp.float32) * 0.1
  return PackedMXFP4(values=values, scales=scales, bias=bias, in_features=in_features,
                     swiglu_halves=swiglu_halves)
