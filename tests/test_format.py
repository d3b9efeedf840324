"""The MXFP4 format: code table, nibble order, OCP rounding, and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxfp4_jax import mxfp4
from mxfp4_jax.mxfp4 import format as fmt

# The E2M1 table written out independently of the library: sign, exponent (bias 1), mantissa.
E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], np.float64)
E2M1 = np.concatenate([E2M1, -E2M1])
KERNEL_SCALES = np.arange(fmt.KERNEL_SCALE_MIN, fmt.KERNEL_SCALE_MAX + 1)


def pack_codes(codes):
  """[..., 32] codes -> [..., 16] bytes by hand: element 2j low nibble, element 2j+1 high."""
  codes = np.asarray(codes, np.uint8)
  return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def block_scale(scales):
  return np.ldexp(1.0, np.asarray(scales, np.int64) - 127)


def quantize_np(w):
  blocks, scales = fmt.quantize(jnp.asarray(w, jnp.float32))
  return np.asarray(blocks), np.asarray(scales)


def dequantize_np(blocks, scales):
  return np.asarray(fmt.dequantize(jnp.asarray(blocks), jnp.asarray(scales)), np.float64)


def test_code_table_matches_e2m1():
  """The library's table is the one every checkpoint was written with."""
  np.testing.assert_array_equal(fmt.E2M1_VALUES, E2M1)
  np.testing.assert_array_equal(np.signbit(fmt.E2M1_VALUES), np.arange(16) >= 8)


def test_every_code_and_scale_round_trips():
  """All 16 codes at every scale the kernel accepts survive dequantize -> quantize bit for bit.

  Each block holds all 16 codes twice, so its largest magnitude is 6 * S and quantize must pick
  the original scale back.
  """
  codes = np.tile(np.arange(32) % 16, (len(KERNEL_SCALES), 1))
  codes[1::2] = codes[1::2, ::-1]  # both nibble positions see every code
  blocks = pack_codes(codes)[:, None, :]  # [S, 1, 16]
  scales = KERNEL_SCALES.astype(np.uint8)[:, None]
  values = dequantize_np(blocks, scales)
  np.testing.assert_array_equal(values, E2M1[codes] * block_scale(scales))
  blocks2, scales2 = quantize_np(values)
  np.testing.assert_array_equal(scales2, scales)
  np.testing.assert_array_equal(blocks2, blocks)


@given(seed=st.integers(0, 2**32 - 1), scale=st.integers(fmt.KERNEL_SCALE_MIN, fmt.KERNEL_SCALE_MAX),
       top=st.sampled_from([6, 7, 14, 15]))
def test_random_blocks_round_trip(seed, scale, top):
  """Random codes round-trip exactly once the block max is +-4 or +-6 (which pins the scale)."""
  rng = np.random.default_rng(seed)
  codes = rng.integers(0, 16, (3, 32))
  limit = top & 7  # no magnitude above the pinning one, or the scale would change
  codes = np.where((codes & 7) > limit, codes & 8 | limit, codes)
  codes[:, rng.integers(0, 32)] = top
  blocks = pack_codes(codes)[None]
  scales = np.full((1, 3), scale, np.uint8)
  blocks2, scales2 = quantize_np(dequantize_np(blocks, scales))
  np.testing.assert_array_equal(scales2, scales)
  np.testing.assert_array_equal(blocks2, blocks)


def test_zero_block_keeps_signs_and_gets_neutral_scale():
  codes = np.array([0, 8] * 16)
  blocks = pack_codes(codes)[None, None]
  values = dequantize_np(blocks, np.array([[90]], np.uint8))
  blocks2, scales2 = quantize_np(values)
  np.testing.assert_array_equal(scales2, [[127]])
  np.testing.assert_array_equal(blocks2, blocks)


def test_nibble_order():
  """Low nibble is the even element: byte 0x21 is (0.5, 1.0) * S, byte 0xF8 is (-0, -6) * S."""
  blocks = np.zeros((2, 1, 16), np.uint8)
  blocks[0, 0, 0] = 0x21
  blocks[1, 0, 5] = 0xF8
  scales = np.array([[127], [130]], np.uint8)
  values = dequantize_np(blocks, scales)
  expected = np.zeros((2, 32))
  expected[0, :2] = [0.5, 1.0]
  expected[1, 10:12] = [-0.0, -6.0 * 8]
  np.testing.assert_array_equal(values, expected)
  assert np.signbit(values[1, 10])

  w = np.zeros((1, 32), np.float32)
  w[0, :2] = [0.5, 1.0]
  w[0, 31] = 6.0
  blocks2, scales2 = quantize_np(w)
  assert scales2[0, 0] == 127
  assert blocks2[0, 0, 0] == 0x21 and blocks2[0, 0, 15] == 0x70


def test_dequantize_blocks_along_last_axis():
  """[E, N, K/32, 16] -> [E, N, K]: block b covers k in [32 b, 32 b + 32)."""
  blocks = np.zeros((2, 3, 4, 16), np.uint8)
  blocks[1, 2, 3, 0] = 0x02  # k = 96: 1.0
  scales = np.full((2, 3, 4), 127, np.uint8)
  values = dequantize_np(blocks, scales)
  assert values.shape == (2, 3, 128)
  assert values[1, 2, 96] == 1.0 and np.count_nonzero(values) == 1
  empty = mxfp4.dequantize(np.zeros((0, 2, 16), np.uint8), np.zeros((0, 2), np.uint8))
  assert empty.shape == (0, 64)


def grid_spacing(magnitude):
  """Distance between neighbouring E2M1 magnitudes around ``magnitude`` (in units of S)."""
  return np.where(magnitude < 2, 0.5, np.where(magnitude < 4, 1.0, 2.0))


@pytest.mark.parametrize("spread", [0, 8, 40])
def test_quantization_error_within_format_bound(rng, spread):
  """Each value is within half a grid step of its input, or saturated at +-6 S.

  ``spread`` varies the magnitude from block to block by up to 2**spread.
  """
  w = rng.standard_normal((64, 8, 32))
  w *= np.ldexp(1.0, rng.integers(-spread, spread + 1, (64, 8, 1)))
  w = w.astype(np.float32).reshape(64, 256)
  blocks, scales = quantize_np(w)
  q = dequantize_np(blocks, scales).reshape(64, 8, 32)
  w = w.astype(np.float64).reshape(64, 8, 32)
  s = block_scale(scales)[..., None]

  # The shared exponent is floor(log2(amax)) - 2: the block max lands in [4, 8) * S.
  amax = np.abs(w).max(-1, keepdims=True)
  assert np.all((4 * s <= amax) & (amax < 8 * s))

  x = np.abs(w) / s
  err = np.abs(q - w) / s
  saturated = x >= 6
  assert saturated.any()
  assert np.all(err[~saturated] <= 0.5 * grid_spacing(x[~saturated]))
  np.testing.assert_array_equal(q[saturated], (np.sign(w) * 6 * s)[saturated])
  assert np.all(np.abs(q) <= 6 * s)
  assert np.all((q == 0) | (np.sign(q) == np.sign(w)))
  # Every value is on the grid of its block.
  assert np.all(np.isin(q / s, E2M1))


@pytest.mark.parametrize("exponent", [-20, 0, 13])
@pytest.mark.parametrize("value,expected", [
    (0.25, 0.0), (0.75, 1.0), (1.25, 1.0), (1.75, 2.0), (2.5, 2.0), (3.5, 4.0), (5.0, 4.0)])
def test_ties_round_to_even(value, expected, exponent):
  """A tie goes to the code with mantissa bit 0; the 6.0 fixes the block scale at 2**exponent."""
  w = np.zeros((1, 32), np.float32)
  w[0, :3] = np.array([value, -value, 6.0]) * 2.0**exponent
  blocks, scales = quantize_np(w)
  assert scales[0, 0] == 127 + exponent
  q = dequantize_np(blocks, scales)[0] / 2.0**exponent
  assert q[0] == expected and q[1] == -expected


@pytest.mark.parametrize("midpoint", [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
def test_values_off_a_tie_round_to_nearest(midpoint):
  below, above = np.nextafter(np.float32(midpoint), 0), np.nextafter(np.float32(midpoint), 8)
  w = np.zeros((1, 32), np.float32)
  w[0, :3] = [below, above, 6.0]
  q = dequantize_np(*quantize_np(w))[0]
  lower, upper = E2M1[:8][E2M1[:8] < midpoint].max(), E2M1[:8][E2M1[:8] > midpoint].min()
  assert (q[0], q[1]) == (lower, upper)


def test_saturation():
  """Values in (6, 8) * S saturate to +-6 S instead of overflowing to the next exponent."""
  w = np.zeros((1, 32), np.float32)
  w[0, :4] = [7.9, -7.5, 6.5, -5.5]
  blocks, scales = quantize_np(w)
  assert scales[0, 0] == 127
  np.testing.assert_array_equal(dequantize_np(blocks, scales)[0, :4], [6.0, -6.0, 6.0, -6.0])


def test_quantize_axis():
  """``axis`` names the blocked dimension; it is moved last."""
  w = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
  blocks, scales = fmt.quantize(w, axis=0)
  blocks_t, scales_t = fmt.quantize(w.T)
  np.testing.assert_array_equal(blocks, blocks_t)
  np.testing.assert_array_equal(scales, scales_t)


def test_quantize_under_jit_matches_eager(rng):
  w = rng.standard_normal((4, 96)).astype(np.float32)
  for a, b in zip(jax.jit(fmt.quantize)(w), fmt.quantize(w)):
    np.testing.assert_array_equal(a, b)


def test_decode_scales_is_exact():
  s = np.arange(1, 255, dtype=np.uint8)
  np.testing.assert_array_equal(np.asarray(fmt.decode_scales(jnp.asarray(s)), np.float64),
                                block_scale(s))


def test_the_e8m0_nan_decodes_to_nan_under_a_trace():
  """0xFF is an error on concrete bytes; under jit, where it cannot be, it is NaN (not 2**128 =
  inf), and so is every value of its block."""
  scales = jnp.asarray([127, 0xFF], jnp.uint8)
  assert np.isnan(np.asarray(jax.jit(fmt.decode_scales)(scales))).tolist() == [False, True]
  blocks = jnp.asarray(np.full((2, 16), 0x21, np.uint8))
  values = np.asarray(jax.jit(fmt.dequantize)(blocks, scales)).reshape(2, 32)  # block by block
  assert np.isfinite(values[0]).all() and np.isnan(values[1]).all()


def test_e2m1_to_bf16_bits_is_exact():
  """The kernel's integer decode gives E2M1[code] * 2**(s - 127) for every code and scale."""
  codes = jnp.arange(16, dtype=jnp.int32)[:, None]
  scales = jnp.asarray(KERNEL_SCALES, jnp.int32)[None, :]
  bits = fmt.e2m1_to_bf16_bits(codes, scales)
  assert bits.dtype == jnp.uint16
  got = np.asarray(jax.lax.bitcast_convert_type(bits, jnp.bfloat16).astype(jnp.float32), np.float64)
  expected = E2M1[:, None] * block_scale(KERNEL_SCALES)[None, :]
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


def test_e2m1_to_bf16_bits_matches_dequantize(rng):
  blocks = rng.integers(0, 256, (8, 4, 16), dtype=np.uint8)
  scales = rng.integers(fmt.KERNEL_SCALE_MIN, fmt.KERNEL_SCALE_MAX + 1, (8, 4), dtype=np.uint8)
  codes = fmt.blocks_to_codes(jnp.asarray(blocks)).astype(jnp.int32)
  bits = fmt.e2m1_to_bf16_bits(codes, jnp.asarray(scales, jnp.int32)[..., None])
  got = jax.lax.bitcast_convert_type(bits, jnp.bfloat16).astype(jnp.float32).reshape(8, 128)
  np.testing.assert_array_equal(got, dequantize_np(blocks, scales))


# --- bad inputs -----------------------------------------------------------------------------------


def good_blocks():
  return np.zeros((2, 3, 16), np.uint8), np.full((2, 3), 127, np.uint8)


def test_quantize_rejects_k_not_multiple_of_32():
  with pytest.raises(ValueError, match="48, not a multiple of 32"):
    fmt.quantize(np.zeros((2, 48), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_rejects_non_finite(bad):
  w = np.zeros((2, 32), np.float32)
  w[1, 7] = bad
  with pytest.raises(ValueError, match="NaN or infinity"):
    fmt.quantize(w)


def test_quantize_names_float64_values_beyond_float32():
  w = np.zeros((2, 32))
  w[0, 3] = -1e39
  for host in (w, w.tolist()):
    with pytest.raises(ValueError, match="quantize: w holds -1e\\+39, beyond float32's range"):
      fmt.quantize(host)
  w[0, 3] = np.nextafter(np.float64(np.finfo(np.float32).max), np.inf)  # rounds to float32's max
  assert int(fmt.quantize(w)[1][0, 0]) == 127 + 127 - 2  # 2**127 * 1.99.., scale 2**(127 - 2)


def test_quantize_rejects_integers_and_scalars():
  with pytest.raises(TypeError, match="w must be a float array"):
    fmt.quantize(np.zeros((2, 32), np.int32))
  with pytest.raises(ValueError, match="at least one dimension"):
    fmt.quantize(np.float32(1.0))
  with pytest.raises(ValueError, match=r"axis=2 is out of range for w of shape \(2, 32\)"):
    fmt.quantize(np.ones((2, 32), np.float32), axis=2)
  with pytest.raises(TypeError, match="axis must be an int, got None"):
    fmt.quantize(np.ones((2, 32), np.float32), axis=None)
  with pytest.raises(TypeError, match="scales must be uint8"):
    fmt.decode_scales([127])  # a list of Python ints is int32, not E8M0 bytes


def test_dequantize_rejects_wrong_block_dtype():
  blocks, scales = good_blocks()
  with pytest.raises(TypeError, match="blocks must be uint8, got int8"):
    fmt.dequantize(blocks.astype(np.int8), scales)


def test_dequantize_rejects_wrong_scale_dtype():
  blocks, scales = good_blocks()
  with pytest.raises(TypeError, match="scales must be uint8, got float32"):
    fmt.dequantize(blocks, scales.astype(np.float32))


def test_decoding_rejects_output_dtypes_that_are_not_float():
  """An int dtype would truncate 0.5 to 0 and saturate 2**73: an error, not wrong values."""
  blocks, scales = good_blocks()
  for dtype in (jnp.int32, np.int8, bool):
    with pytest.raises(TypeError, match="dequantize: dtype must be a float dtype"):
      fmt.dequantize(blocks, scales, dtype=dtype)
    with pytest.raises(TypeError, match="decode_scales: dtype must be a float dtype"):
      fmt.decode_scales(scales, dtype=dtype)
  with pytest.raises(TypeError, match="dequantize: dtype must be a float dtype, got 'nonsense'"):
    fmt.dequantize(blocks, scales, dtype="nonsense")
  assert fmt.dequantize(blocks, scales, dtype=jnp.bfloat16).dtype == jnp.bfloat16


def test_dequantize_rejects_mismatched_shapes():
  blocks, scales = good_blocks()
  with pytest.raises(ValueError, match=r"scales shape \(2, 4\) does not match blocks shape"):
    fmt.dequantize(blocks, np.full((2, 4), 127, np.uint8))
  with pytest.raises(ValueError, match=r"blocks must have shape \(\.\.\., K/32, 16\)"):
    fmt.dequantize(np.zeros((2, 3, 8), np.uint8), scales)


def test_dequantize_rejects_nan_scale():
  blocks, scales = good_blocks()
  scales[1, 2] = 0xFF
  with pytest.raises(ValueError, match="0xFF"):
    fmt.dequantize(blocks, scales)


def test_tiny_blocks_get_a_scale_the_kernel_decodes():
  """Blocks far below the normal range still quantize to scales that `pack` accepts."""
  w = np.zeros((3, 32), np.float32)
  w[0, 0], w[1, 0], w[2, :] = 2.0**-124, 1.5e-38, 2.0**-120
  blocks, scales = fmt.quantize(w)
  assert np.asarray(scales).min() >= fmt.KERNEL_SCALE_MIN
  restored = np.asarray(fmt.dequantize(blocks, scales))
  assert np.all(np.abs(restored - w) <= np.abs(w))  # never worse than flushing to zero
  assert np.array_equal(restored[2], w[2])  # 2**-120 = 1.0 * 2**-120 is exact
  mxfp4.pack(blocks[None], scales[None])
