"""The kernel layout contract: pack/unpack, nibble placement, padding and the scale-range check."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxfp4_jax import mxfp4
from mxfp4_jax.mxfp4 import format as fmt
from mxfp4_jax.mxfp4 import layout


def random_checkpoint(rng, e, n, num_blocks, with_bias=True,
                      scale_range=(100, fmt.KERNEL_SCALE_MAX)):
  blocks = rng.integers(0, 256, (e, n, num_blocks, 16), dtype=np.uint8)
  scales = rng.integers(*scale_range, (e, n, num_blocks), endpoint=True, dtype=np.uint8)
  bias = rng.standard_normal((e, n)).astype(np.float32) if with_bias else None
  return blocks, scales, bias


def checkpoint_codes(blocks):
  """[..., K/32, 16] bytes -> [..., K] codes, written out independently of the library."""
  codes = np.stack([blocks & 0xF, blocks >> 4], axis=-1)
  return codes.reshape(*blocks.shape[:-2], -1)


def dequantize_np(blocks, scales):
  """Checkpoint layout -> [..., N, K] float32 values with the E2M1 table and 2**(s - 127)."""
  values = fmt.E2M1_VALUES[checkpoint_codes(blocks)]
  return values * np.repeat(np.ldexp(np.float32(1), scales.astype(np.int32) - 127), 32, axis=-1)


def deinterleave_np(a, axis):
  a = np.moveaxis(a, axis, 0)
  return np.moveaxis(np.concatenate([a[0::2], a[1::2]]), 0, axis)


checkpoints = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(1, 4),  # E
    st.sampled_from([16, 32, 48]),  # N
    st.integers(1, 5),  # K / 32: odd counts need a padding block
    st.booleans(),  # swiglu_halves
    st.booleans(),  # with bias
)


def pack_and_back(blocks, scales, bias, swiglu_halves):
  packed = mxfp4.pack(blocks, scales, bias, swiglu_halves=swiglu_halves)
  return packed, mxfp4.unpack(packed), mxfp4.dequantize_packed(packed)


# Eager JAX compiles every op once per new shape; one jit per example keeps the property tests fast.
pack_and_back_jit = jax.jit(pack_and_back, static_argnames="swiglu_halves")


def check_pack_properties(case, fn):
  seed, e, n, num_blocks, swiglu_halves, with_bias = case
  blocks, scales, bias = random_checkpoint(np.random.default_rng(seed), e, n, num_blocks, with_bias)
  packed, (blocks2, scales2, bias2), dense = fn(blocks, scales, bias, swiglu_halves=swiglu_halves)

  k_pad = -(-num_blocks // 2) * 64
  assert packed.num_experts == e and packed.out_features == n
  assert packed.in_features == 32 * num_blocks and packed.padded_in_features == k_pad
  shapes = layout.packed_shapes(e, 32 * num_blocks, n)
  assert packed.values.shape == shapes["values"] == (e, k_pad // 64, n, 32)
  assert packed.scales.shape == shapes["scales"] == (e, k_pad // 32, n)
  assert packed.nbytes == e * n * (k_pad // 2 + k_pad // 32)  # 4.25 bits a weight, padded

  # unpack is the exact inverse of pack.
  np.testing.assert_array_equal(blocks2, blocks)
  np.testing.assert_array_equal(scales2, scales)
  if with_bias:
    np.testing.assert_array_equal(bias2, bias)
    expected_bias = deinterleave_np(bias, 1) if swiglu_halves else bias
    np.testing.assert_array_equal(packed.bias, expected_bias)
  else:
    assert bias2 is None and packed.bias is None

  # The packed weight is the checkpoint's W[e].T ([K, N]), glu half first with SwiGLU.
  expected = dequantize_np(blocks, scales)  # [E, N, K]
  if swiglu_halves:
    expected = deinterleave_np(expected, 1)
  assert dense.shape == (e, 32 * num_blocks, n)
  np.testing.assert_array_equal(dense, expected.transpose(0, 2, 1))


@given(checkpoints)
def test_pack_properties(case):
  check_pack_properties(case, pack_and_back_jit)


@pytest.mark.parametrize("case", [(0, 1, 16, 1, False, False), (1, 3, 48, 5, True, True),
                                  (2, 2, 32, 2, False, True)])
def test_pack_properties_eager(case):
  """The same properties outside jit, where pack also runs its scale-range check."""
  check_pack_properties(case, pack_and_back)


@pytest.mark.parametrize("num_blocks", [3, 4])
def test_layout_contract_by_hand(rng, num_blocks):
  """values[e, t, n, i], i = 8 a + 2 b + c: with j = 8 b + 2 a + c, the low nibble is k = 64 t + j
  and the high nibble k = 64 t + 32 + j; padding is zero codes under scale 127; scales[e, b, n]
  is the checkpoint's scales[e, n, b]."""
  e, n = 2, 16
  blocks, scales, _ = random_checkpoint(rng, e, n, num_blocks, False)
  codes = checkpoint_codes(blocks)  # [E, N, K]
  k = codes.shape[-1]
  packed = mxfp4.pack(blocks, scales)
  values, packed_scales = np.asarray(packed.values), np.asarray(packed.scales)
  k_tiles = values.shape[1]
  for t in range(k_tiles):
    for i in range(32):
      a, b, c = i // 8, i % 8 // 2, i % 2
      j = 8 * b + 2 * a + c
      for half, nibble in ((0, values[:, t, :, i] & 0xF), (1, values[:, t, :, i] >> 4)):
        kk = 64 * t + 32 * half + j
        expected = codes[:, :, kk] if kk < k else np.zeros((e, n), np.uint8)
        np.testing.assert_array_equal(nibble, expected, err_msg=f"t={t} i={i} half={half}")
  for b in range(2 * k_tiles):
    expected = scales[:, :, b] if b < num_blocks else np.full((e, n), 127, np.uint8)
    np.testing.assert_array_equal(packed_scales[:, b, :], expected)


def test_swiglu_halves_reorder_rows(rng):
  """With swiglu_halves, packed row r < N/2 is checkpoint row 2 r (glu), r >= N/2 is 2 (r - N/2) + 1."""
  blocks, scales, bias = random_checkpoint(rng, 1, 32, 2)
  plain = np.asarray(mxfp4.pack(blocks, scales).values)
  halves = mxfp4.pack(blocks, scales, bias, swiglu_halves=True)
  for r in range(32):
    source = 2 * r if r < 16 else 2 * (r - 16) + 1
    np.testing.assert_array_equal(np.asarray(halves.values)[:, :, r], plain[:, :, source])
    assert halves.bias[0, r] == bias[0, source]


@jax.jit(static_argnames="axis")
def swiglu_orders(a, axis):
  d = mxfp4.deinterleave_swiglu(a, axis=axis)
  i = mxfp4.interleave_swiglu(a, axis=axis)
  return d, mxfp4.interleave_swiglu(d, axis=axis), mxfp4.deinterleave_swiglu(i, axis=axis)


@given(st.integers(1, 4), st.integers(1, 6), st.integers(-3, 2), st.integers(0, 2**32 - 1))
def test_deinterleave_interleave_inverse(rows, half, axis, seed):
  shape = [rows, rows + 1, rows + 2]
  shape[axis] = 2 * half
  a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
  d, back, back2 = swiglu_orders(a, axis)
  np.testing.assert_array_equal(d, deinterleave_np(a, axis))
  np.testing.assert_array_equal(back, a)
  np.testing.assert_array_equal(back2, a)


def test_pack_under_jit_matches_eager(rng):
  blocks, scales, bias = random_checkpoint(rng, 2, 32, 3)
  pack = jax.jit(mxfp4.pack, static_argnames="swiglu_halves")
  for halves in (False, True):
    a, b = pack(blocks, scales, bias, swiglu_halves=halves), mxfp4.pack(blocks, scales, bias,
                                                                         swiglu_halves=halves)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(x, y)


# --- the kernel's scale range -------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 1, 129, 254])
def test_pack_rejects_scales_the_kernel_cannot_decode(rng, bad):
  blocks, scales, _ = random_checkpoint(rng, 2, 16, 3, False)
  blocks[1, 5, 2, 7] |= 0x01  # a non-zero code in the block
  scales[1, 5, 2] = bad
  with pytest.raises(ValueError, match=rf"scale byte {bad} at \(1, 5, 2\) is outside \[2, 128\]"):
    mxfp4.pack(blocks, scales)


@pytest.mark.parametrize("bad", [0, 1, 128, 129, 130, 254])
def test_pack_accepts_any_scale_on_zero_blocks(rng, bad):
  """A block of +-0 codes is zeros whatever its scale, so its scale is not refused; one above
  KERNEL_SCALE_MAX is stored as that maximum, whose bf16x2 decode factor is finite (129's,
  2**128, is not: the GPU decode turned the block's zeros into NaN)."""
  blocks, scales, _ = random_checkpoint(rng, 2, 16, 3, False)
  blocks[1, 5, 2] = rng.choice([0x00, 0x08, 0x80, 0x88], 16)
  scales[1, 5, 2] = bad
  packed = mxfp4.pack(blocks, scales)
  dense = np.asarray(mxfp4.dequantize_packed(packed))
  assert not dense[1, 64:96, 5].any()
  stored = scales.copy()
  stored[1, 5, 2] = min(bad, fmt.KERNEL_SCALE_MAX)
  np.testing.assert_array_equal(mxfp4.unpack(packed)[1], stored)
  factors = np.asarray(fmt.bf16x2_factor_bits(packed.scales))
  assert ((factors & 0x7F80) != 0x7F80).all()  # no infinite (or NaN) factor


def test_pack_rejects_nan_scale_even_on_zero_blocks():
  blocks = np.zeros((1, 16, 2, 16), np.uint8)
  scales = np.full((1, 16, 2), 127, np.uint8)
  scales[0, 3, 1] = 0xFF
  with pytest.raises(ValueError, match="0xFF"):
    mxfp4.pack(blocks, scales)


def test_pack_rejects_bad_shapes(rng):
  blocks, scales, bias = random_checkpoint(rng, 2, 18, 2)
  with pytest.raises(ValueError, match=r"pack: blocks must have shape \[E, N, K/32, 16\]"):
    mxfp4.pack(blocks[0], scales[0])
  out_of_range = np.array(scales)
  out_of_range[0, 0, 0] = fmt.KERNEL_SCALE_MAX + 1  # past what the kernel decodes
  with pytest.raises(ValueError, match=r"pack: blocks must have shape"):  # the rank comes first
    mxfp4.pack(blocks[0], out_of_range[0])
  with pytest.raises(ValueError, match="needs an even N, got 17"):
    mxfp4.pack(blocks[:, :17], scales[:, :17], swiglu_halves=True)
  with pytest.raises(ValueError, match=r"bias must be a float array of shape \(2, 18\), got float32\(2, 17\)"):
    mxfp4.pack(blocks, scales, bias[:, :17])
  with pytest.raises(ValueError, match=r"got complex64\(2, 18\)"):
    mxfp4.pack(blocks, scales, bias.astype(np.complex64))
  with pytest.raises(ValueError, match="pack: bias holds NaN or infinity"):
    mxfp4.pack(blocks, scales, np.where(np.arange(18) == 5, np.nan, bias))
  with pytest.raises(ValueError, match="scales shape"):
    mxfp4.pack(blocks, scales[:, :, :1])
  with pytest.raises(TypeError, match="blocks must be uint8"):
    mxfp4.pack(blocks.astype(np.int8), scales)
  with pytest.raises(ValueError, match=r"with E, N, K/32 >= 1, got \(0, 18, 2, 16\)"):
    mxfp4.pack(blocks[:0], scales[:0])
  with pytest.raises(TypeError, match="pack: swiglu_halves must be a bool, got 'no'"):
    mxfp4.pack(blocks, scales, swiglu_halves="no")


def test_packed_weights_that_break_the_contract_are_refused(rng):
  """A PackedMXFP4 built or edited by hand: every entry point that takes one says what is off
  (the kernel would otherwise drop a row, or read in_features' K of wider values)."""
  blocks, scales, bias = random_checkpoint(rng, 2, 18, 3)  # K = 96: 2 K tiles
  w = mxfp4.pack(blocks, scales, bias, swiglu_halves=True)
  bad = {
      r"in_features=64 does not fit values of shape \(2, 2, 18, 32\)":
          dataclasses.replace(w, in_features=64),
      r"in_features='96' does not fit": dataclasses.replace(w, in_features="96"),
      r"in_features=True does not fit": dataclasses.replace(w, in_features=True),
      "swiglu_halves=True but an odd N=17": dataclasses.replace(
          w, values=w.values[:, :, :17], scales=w.scales[:, :, :17], bias=w.bias[:, :17]),
      "at least one expert": dataclasses.replace(w, values=w.values[:0], scales=w.scales[:0],
                                                 bias=w.bias[:0]),
      r"bias must be a float array of shape \(2, 18\), got int32\(2, 18\)":
          dataclasses.replace(w, bias=w.bias.astype(jnp.int32)),  # else added as numbers
  }
  for match, packed in bad.items():
    for entry in (mxfp4.unpack, mxfp4.dequantize_packed):
      with pytest.raises(ValueError, match=match):
        entry(packed)
  with pytest.raises(TypeError, match="w.swiglu_halves must be a bool, got 'no'"):
    mxfp4.unpack(dataclasses.replace(w, swiglu_halves="no"))
  with pytest.raises(TypeError, match="dequantize_packed: dtype must be a float dtype, got int8"):
    mxfp4.dequantize_packed(w, np.int8)  # would truncate 0.5 to 0
  with pytest.raises(ValueError, match=r"interleave_swiglu: axis -1 must have an even length"):
    layout.interleave_swiglu(np.arange(5))
  with pytest.raises(ValueError, match=r"deinterleave_swiglu: axis 0 must have an even length"):
    layout.deinterleave_swiglu(np.zeros((5, 2)), axis=0)
  for axis in (2, -3, 1.5, None):
    with pytest.raises(ValueError, match=rf"deinterleave_swiglu: axis {axis} is not an axis of "
                                         r"shape \(4, 2\)"):
      layout.deinterleave_swiglu(np.zeros((4, 2)), axis=axis)


def test_unpack_rejects_non_packed():
  with pytest.raises(TypeError, match="w must be a PackedMXFP4"):
    mxfp4.unpack((np.zeros((1, 1, 16, 32), np.uint8), np.zeros((1, 2, 16), np.uint8)))


def test_packed_is_a_pytree(rng):
  """Packed weights pass through jit with in_features and swiglu_halves kept static."""
  blocks, scales, bias = random_checkpoint(rng, 2, 16, 3)
  packed = mxfp4.pack(blocks, scales, bias, swiglu_halves=True)
  assert len(jax.tree.leaves(packed)) == 3
  out = jax.jit(lambda w: w)(packed)
  assert out.in_features == 96 and out.swiglu_halves
  np.testing.assert_array_equal(mxfp4.dequantize_packed(out), mxfp4.dequantize_packed(packed))
  assert jnp.asarray(out.values).dtype == jnp.uint8


@pytest.mark.parametrize("in_features", [64, 96])
def test_random_packed_keeps_the_layout_contract(in_features):
  """Random weights built in the packed layout are what `pack` makes of their checkpoint form,
  a padded half tile included (zero codes, scale 127)."""
  w = layout.random_packed(jax.random.PRNGKey(1), 2, in_features, 16, swiglu_halves=True)
  blocks, scales, bias = mxfp4.unpack(w)
  again = mxfp4.pack(blocks, scales, bias, swiglu_halves=True)
  for name in ("values", "scales", "bias"):
    np.testing.assert_array_equal(getattr(again, name), getattr(w, name), err_msg=name)
  assert again.in_features == w.in_features == in_features
  with pytest.raises(ValueError, match="in_features=80 must be a positive multiple of 32"):
    layout.random_packed(jax.random.PRNGKey(1), 2, 80, 16)
  with pytest.raises(ValueError, match="out_features even with swiglu_halves"):
    layout.random_packed(jax.random.PRNGKey(1), 2, 64, 17, swiglu_halves=True)
  with pytest.raises(ValueError, match="in_features=64.0 must be a positive multiple of 32"):
    layout.random_packed(jax.random.PRNGKey(1), 2, 64.0, 16)  # check_packed would refuse it
  with pytest.raises(TypeError, match="random_packed: swiglu_halves must be a bool, got 1"):
    layout.random_packed(jax.random.PRNGKey(1), 2, 64, 16, swiglu_halves=1)
  for scale_range in [(0, 255), (124, 118)]:  # NaN and out-of-range bytes; a reversed range
    with pytest.raises(ValueError, match=re.escape(f"scale_range={scale_range} must be (low, high)")):
      layout.random_packed(jax.random.PRNGKey(1), 2, 64, 16, scale_range=scale_range)
