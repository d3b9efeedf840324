"""The MXFP4 format (OCP Microscaling v1.0): E2M1 values in blocks of 32 with one E8M0 scale.

This module defines the E2M1 code table and the nibble order.

Checkpoint convention (GPT-OSS, both the HF and the ``original/`` layouts):
  * a weight ``W[..., N, K]`` (K = input dim) is cut into blocks of 32 along K;
  * ``blocks[..., N, K // 32, 16]`` uint8: byte ``j`` of a block holds element ``2j`` in its LOW
    nibble and element ``2j + 1`` in its HIGH nibble;
  * ``scales[..., N, K // 32]`` uint8, E8M0: value ``2 ** (s - 127)``; ``0xFF`` is NaN and rejected.
  * element value = ``E2M1[code] * 2 ** (s - 127)``.

Everything here is written with ``jnp`` so that it runs on host arrays, on device, under ``jit``
and (for ``e2m1_to_bf16_bits``) inside Pallas kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mxfp4_jax.argcheck import is_concrete, is_int

BLOCK_SIZE = 32  # values that share one scale
BYTES_PER_BLOCK = BLOCK_SIZE // 2
SCALE_BIAS = 127
SCALE_NAN = 0xFF
BITS_PER_WEIGHT = 4 + 8 / BLOCK_SIZE  # 4.25: the byte count every roofline uses

# Code -> value. Bit 3 is the sign, bits 2..1 the exponent (bias 1), bit 0 the mantissa.
E2M1_VALUES = np.array(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
    dtype=np.float32,
)
E2M1_EMAX = 2  # exponent of the largest E2M1 value: 6 = 1.5 * 2**2

# Rounding thresholds between consecutive magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6. A tie rounds to the
# code whose mantissa bit is 0 (round-to-nearest-even): down from an even code, up from an odd one.
_MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)

# Scale bytes every in-kernel decode takes exactly: from 2 every value of the block is a normal
# bf16; up to 128 the factor 2**(scale - 1) of `e2m1_bf16x2_ptx` is a finite bf16 (|w| <= 12).
KERNEL_SCALE_MIN = 2
KERNEL_SCALE_MAX = 128


def _check_dtype(name: str, x, dtype) -> None:
  if jnp.dtype(x.dtype) != jnp.dtype(dtype):
    raise TypeError(f"{name} must be {jnp.dtype(dtype).name}, got {jnp.dtype(x.dtype).name}")


def check_float_dtype(what: str, dtype) -> np.dtype:
  """``dtype`` as a NumPy dtype if it is a float type, the output type of decoded values (an int
  type would truncate 0.5 to 0); else a TypeError naming ``what``."""
  try:
    dtype = jnp.dtype(dtype)
  except TypeError:
    raise TypeError(f"{what} must be a float dtype, got {dtype!r}") from None
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"{what} must be a float dtype, got {dtype.name}")
  return dtype


# --- E8M0 scales --------------------------------------------------------------------------------


def check_scales(scales, name: str = "scales") -> None:
  """Rejects E8M0 NaN (0xFF) when the values are known (not under a trace)."""
  _check_dtype(name, scales, jnp.uint8)
  if is_concrete(scales) and bool(np.any(np.asarray(scales) == SCALE_NAN)):
    raise ValueError(f"{name} holds 0xFF, the E8M0 NaN encoding")


def decode_scales(scales, dtype=jnp.float32) -> jax.Array:
  """E8M0 bytes -> ``2 ** (s - 127)``: exact in float32 for bytes 1..254 (byte 0, 2**-127, is a
  float32 subnormal, which XLA on CPU flushes to zero); 0xFF, an error when the bytes are
  concrete, is NaN under a trace."""
  check_float_dtype("decode_scales: dtype", dtype)
  scales = jnp.asarray(scales)
  check_scales(scales)
  powers = jnp.ldexp(jnp.ones((), jnp.float32), scales.astype(jnp.int32) - SCALE_BIAS)
  return jnp.where(scales == SCALE_NAN, jnp.nan, powers).astype(dtype)


def encode_scale_exponents(exponents) -> jax.Array:
  """Power-of-two exponents -> E8M0 bytes, clamped to the finite range [2**-127, 2**127]."""
  return (jnp.clip(exponents, -SCALE_BIAS, SCALE_BIAS) + SCALE_BIAS).astype(jnp.uint8)


# --- E2M1 codes and nibbles ---------------------------------------------------------------------


def holds_nonzero(blocks):
  """[..., 16] packed bytes (numpy or jax) -> [...] whether the block holds a non-zero value: a
  magnitude bit in either nibble."""
  return (blocks & 0x77).any(axis=-1)


def split_nibbles(packed) -> tuple[jax.Array, jax.Array]:
  """Bytes -> (low-nibble codes, high-nibble codes), each in [0, 16)."""
  return packed & 0xF, packed >> 4


def join_nibbles(low_codes, high_codes) -> jax.Array:
  """(low-nibble codes, high-nibble codes) -> uint8 bytes; the inverse of `split_nibbles`."""
  return (low_codes.astype(jnp.uint8) & 0xF) | (high_codes.astype(jnp.uint8) << 4)


def blocks_to_codes(blocks) -> jax.Array:
  """``[..., K/32, 16]`` bytes -> ``[..., K/32, 32]`` codes in element order."""
  even, odd = split_nibbles(blocks)  # checkpoint order: low nibble = even element
  return jnp.stack([even, odd], axis=-1).reshape(*blocks.shape[:-1], BLOCK_SIZE)


def codes_to_blocks(codes) -> jax.Array:
  """``[..., K/32, 32]`` codes in element order -> ``[..., K/32, 16]`` bytes."""
  return join_nibbles(codes[..., 0::2], codes[..., 1::2])


def decode_codes(codes, dtype=jnp.float32) -> jax.Array:
  return jnp.asarray(E2M1_VALUES)[codes.astype(jnp.int32)].astype(dtype)


def e2m1_to_bf16_bits(codes, scales):
  """Bit patterns of ``E2M1[code] * 2**(scale - 127)`` as bf16, with integer ops only.

  ``codes`` and ``scales`` are int32 arrays that broadcast together. Exact for scale bytes in
  [KERNEL_SCALE_MIN, KERNEL_SCALE_MAX], where every value is a normal bf16; no float arithmetic, so
  the GPU and the CPU (which flushes subnormals) give the same bits. Kernels call this on tiles in
  registers. Returns uint16 bits; `lax.bitcast_convert_type` turns them into bf16.

  Magnitude v = 2e + m (e: exponent bits, m: mantissa bit). With R = (scale - 1) << 7, the bf16
  bits of 2**(scale - 127) * value are (v << 6) + R for v >= 2 (exponent e + scale - 1, mantissa
  m), R itself for v == 1 (0.5) and 0 for v == 0; ``-v & R`` gives those last two at once. About
  ten integer ops per element, with R computed once per scale.
  """
  magnitude = codes & 7
  scale_bits = (scales - 1) << 7
  bits = jnp.where(magnitude >= 2, (magnitude << 6) + scale_bits, -magnitude & scale_bits)
  return (bits | ((codes & 8) << 12)).astype(jnp.uint16)


def bf16x2_factor_bits(scales):
  """E8M0 scale bytes -> bf16 bits of ``2**(scale - 1)``, the factor `e2m1_bf16x2_ptx`
  multiplies by: the block's scale times the ``2**126`` that turns its bit-moved values into
  numbers. A finite bf16 for scale bytes up to 128 (`KERNEL_SCALE_MAX`). In 16-bit arithmetic
  (no byte overflows it): the add and the shift are one LEA on sm_90, where 32-bit arithmetic
  then a narrowing took three instructions."""
  return (scales.astype(jnp.uint16) + (SCALE_BIAS - 1)) << 7


def scale_bf16x2_bits(scales):
  """E8M0 scale bytes -> uint32 words holding ``2**(scale - 127)`` as a bf16 pair, the factors
  `e2m1_lut_ptx` multiplies by: the byte is a bf16's exponent field as it stands."""
  bits = scales.astype(jnp.uint32) << 7
  return bits | (bits << 16)


def e2m1_bf16x2_ptx(nibble: str) -> str:
  """PTX that decodes the low (``nibble="low"``) or high nibbles of 4 bytes into 4 scaled bf16.

  For `pltriton.elementwise_inline_asm` with ``pack=4``: ``$2`` holds 4 packed bytes, ``$3`` and
  ``$4`` the bf16 factors `bf16x2_factor_bits` (``2**(scale - 1)``) of elements (0, 1) and
  (2, 3); ``$0`` and ``$1`` receive the bf16 pairs. Two values per 32-bit op: with the other
  nibbles masked off and bytes (0, 1), (2, 3) spread one to a 16-bit lane, one integer multiply
  by ``2**a + 2**b`` places two copies of each nibble that cannot carry into each other, one
  with its magnitude bits on a bf16's lowest exponent / top mantissa bits, one with its sign bit
  on the sign; a mask keeps those four bits. That reads as ``value * 2**-126`` (a subnormal for
  0 and 0.5); one ``mul.rn.bf16x2`` by ``2**126`` times the scale makes it the scaled value,
  exactly. The same bits as `e2m1_to_bf16_bits` for scale bytes in [KERNEL_SCALE_MIN,
  KERNEL_SCALE_MAX]; CPU interpret mode cannot run it (and flushes subnormals), so kernels use
  `e2m1_to_bf16_bits` there.
  """
  # Nibble bits 0-2 (magnitude) to bf16 bits 6-8, bit 3 (sign) to bit 15: copies 6 and 12 up
  # for the low nibble, 2 and 8 up for the high one (bits 4-7).
  nibbles, copies = {"low": (0x0F0F0F0F, (1 << 6) | (1 << 12)),
                     "high": (0xF0F0F0F0, (1 << 2) | (1 << 8))}[nibble]
  pair = lambda src, dst, factor: (
      f"mul.lo.u32 {dst}, {src}, {copies:#x}; and.b32 {dst}, {dst}, 0x81C081C0; "
      f"mul.rn.bf16x2 {dst}, {dst}, {factor};")
  return (f"{{ .reg .b32 z, lo, hi, zero; mov.b32 zero, 0; and.b32 z, $2, {nibbles:#x}; "
          "prmt.b32 lo, z, zero, 0x4140; prmt.b32 hi, z, zero, 0x4342; "  # bytes 0,1 | 2,3
          + pair("lo", "$0", "$3") + " " + pair("hi", "$1", "$4") + " }")


def _byte_table(values) -> tuple[int, int]:
  """Eight bytes as the two 32-bit words that `prmt` indexes (byte i of the pair = values[i])."""
  word = sum(int(v) << (8 * i) for i, v in enumerate(values))
  return word & 0xFFFFFFFF, word >> 32


# bf16 bits of the eight E2M1 magnitudes, split into the two bytes `prmt` looks them up as.
_MAGNITUDE_BF16 = np.asarray(E2M1_VALUES[:8], np.float32).view(np.uint32) >> 16
_LOW_BYTES = _byte_table(_MAGNITUDE_BF16 & 0xFF)
_HIGH_BYTES = _byte_table(_MAGNITUDE_BF16 >> 8)
_SIGN_BYTES = _byte_table([0x00, 0x80, 0, 0, 0, 0, 0, 0])
_TABLES = (_LOW_BYTES, _HIGH_BYTES, _SIGN_BYTES)
LUT_REGISTERS = tuple(t[0] for t in _TABLES)  # operands $11..$13 of `e2m1_lut_ptx`


def e2m1_lut_ptx(pairs: str = "nibbles") -> str:
  """PTX that decodes one 32-bit word, 4 bytes of one row, into 8 scaled bf16 by table lookup.

  For `triton_ops.inline_asm` with ``pack=1``: ``$8`` is the word (byte 0 lowest), ``$9`` and
  ``$10`` bf16x2 factors ``2**(scale - 127)``, ``$11..$13`` the first words of the three lookup
  tables (`LUT_REGISTERS`: given as registers, since ptxas would otherwise move each immediate
  into a register before every use); ``$0..$7`` receive the values as 16-bit registers.
  ``pairs="nibbles"`` (the kernel layout): ``$9`` scales the low nibbles and ``$10`` the high
  ones; ``$0..$3`` are the low-nibble values of bytes 0..3 and ``$4..$7`` the high-nibble ones.
  ``pairs="bytes"`` (a byte holds two neighbours under one scale, as in the checkpoint):
  ``$9`` scales bytes 0, 1 and ``$10`` bytes 2, 3; ``$2p``, ``$2p+1`` are byte p's low and high
  nibble, so each register pair is one bf16x2 operand register.

  `prmt` looks up 4 bytes at once in an 8-byte table indexed by 4 nibbles: the bf16 low and
  high bytes of each magnitude, and 0x80 for a set sign bit. One more `prmt` pairs them up and
  one `mul.rn.bf16x2` scales two values (exact: the unscaled value is a normal bf16, and so is
  the product for scale bytes in [KERNEL_SCALE_MIN, KERNEL_SCALE_MAX]). 21 instructions for 8
  values, against 20 for two `e2m1_bf16x2_ptx` calls. The same bits as `e2m1_to_bf16_bits`.
  """
  tables = [f"{register}, {t[1]:#x}" for register, t in zip(("$11", "$12", "$13"), _TABLES)]
  # Nibbles 0..3 of a lookup are (byte 0 low, byte 0 high, byte 1 low, byte 1 high) of two
  # bytes: 0x6240 / 0x7351 pair the lows / the highs, 0x5140 / 0x7362 byte 0's / byte 1's.
  selectors, factors = {"nibbles": ((0x6240, 0x7351), ("$9", "$10")),
                        "bytes": ((0x5140, 0x7362), ("$9", "$9"))}[pairs]

  def half(mag, sign, first, second, factors=factors):
    return (f"prmt.b32 lo, {tables[0]}, {mag}; prmt.b32 hi, {tables[1]}, {mag}; "
            f"prmt.b32 t, {tables[2]}, {sign}; or.b32 hi, hi, t; "
            f"prmt.b32 {first}, lo, hi, {selectors[0]:#x}; "
            f"prmt.b32 {second}, lo, hi, {selectors[1]:#x}; "
            f"mul.rn.bf16x2 {first}, {first}, {factors[0]}; "
            f"mul.rn.bf16x2 {second}, {second}, {factors[1]}; ")

  # m0, s0: magnitudes and sign bits of bytes 0, 1 as nibbles 0..3; m1, s1: of bytes 2, 3.
  # "nibbles": p0, p1 the low nibbles' values of bytes (0, 1) and (2, 3); p2, p3 the high ones'.
  # "bytes": p0..p3 the values of bytes 0..3.
  words = (half("m0", "s0", "p0", "p2") + half("m1", "s1", "p1", "p3") if pairs == "nibbles"
           else half("m0", "s0", "p0", "p1") + half("m1", "s1", "p2", "p3", ("$10", "$10")))
  return ("{ .reg .b32 m0, s0, m1, s1, lo, hi, t, p0, p1, p2, p3; "
          "and.b32 m0, $8, 0x77777777; shr.b32 s0, $8, 3; and.b32 s0, s0, 0x11111111; "
          "shr.b32 m1, m0, 16; shr.b32 s1, s0, 16; " + words
          + "mov.b32 {$0, $1}, p0; mov.b32 {$2, $3}, p1; mov.b32 {$4, $5}, p2; "
            "mov.b32 {$6, $7}, p3; }")


# --- quantize / dequantize ----------------------------------------------------------------------


def _round_to_e2m1_codes(scaled) -> jax.Array:
  """Float values already divided by their block scale -> E2M1 codes (RNE, saturating at 6)."""
  magnitude = jnp.abs(scaled)
  code = jnp.zeros(scaled.shape, jnp.uint8)
  for index, midpoint in enumerate(_MIDPOINTS):
    passed = magnitude > midpoint if index % 2 == 0 else magnitude >= midpoint
    code = code + passed.astype(jnp.uint8)
  return code | (jnp.signbit(scaled).astype(jnp.uint8) << 3)


def quantize(w, axis: int = -1) -> tuple[jax.Array, jax.Array]:
  """Float weights -> (blocks uint8, scales uint8), blocked along ``axis`` (the input dim).

  OCP MX rounding: the block's shared exponent is ``floor(log2(max |w|)) - 2`` (2 = E2M1's largest
  exponent), values are rounded to nearest-even on the E2M1 grid and saturate at +-6 * scale.
  An all-zero block gets scale byte 127. The shared exponent is at least ``KERNEL_SCALE_MIN - 127``
  (2**-125) so that every scale is one the kernel decodes exactly; blocks below that magnitude
  round toward zero. Blocks holding a magnitude of 16 or more get scales above
  ``KERNEL_SCALE_MAX``, which `layout.pack` rejects. ``axis`` is moved last: for ``w[N, K]``
  with ``axis=-1`` the result is ``blocks[N, K/32, 16]``, ``scales[N, K/32]``. Float64 input
  is rounded to float32 first (JAX computes in float32): a value within half a float32 step
  of a tie on the grid rounds as that tie. NaN,
  infinity and (on the host) values past float32's range are an error when ``w`` is concrete;
  under a trace they cannot be checked and give meaningless blocks.
  """
  if not isinstance(w, jax.Array):
    # JAX computes in float32, where a finite float64 past its range turns to infinity.
    w = np.asarray(w)
    if w.dtype.kind == "f":
      with np.errstate(over="ignore"):
        overflows = np.isfinite(w) & np.isinf(w.astype(np.float32))
      if overflows.any():
        raise ValueError(f"quantize: w holds {w[overflows].flat[0]:.3g}, beyond float32's range")
  w = jnp.asarray(w)
  if not jnp.issubdtype(w.dtype, jnp.floating):
    raise TypeError(f"quantize: w must be a float array, got {w.dtype}")
  if w.ndim == 0:
    raise ValueError("quantize: w must have at least one dimension")
  if not is_int(axis):
    raise TypeError(f"quantize: axis must be an int, got {axis!r}")
  if not -w.ndim <= axis < w.ndim:
    raise ValueError(f"quantize: axis={axis} is out of range for w of shape {tuple(w.shape)}")
  w = jnp.moveaxis(w, axis, -1)
  k = w.shape[-1]
  if k % BLOCK_SIZE:
    raise ValueError(f"quantize: the blocked axis has size {k}, not a multiple of {BLOCK_SIZE}")
  if is_concrete(w) and not bool(jnp.all(jnp.isfinite(w))):
    raise ValueError("quantize: w holds NaN or infinity")

  w = w.astype(jnp.float32).reshape(*w.shape[:-1], k // BLOCK_SIZE, BLOCK_SIZE)
  amax = jnp.max(jnp.abs(w), axis=-1)
  _, amax_exponent = jnp.frexp(amax)  # amax = f * 2**e with f in [0.5, 1): floor(log2) = e - 1
  shared_exponent = jnp.where(amax > 0, amax_exponent - 1 - E2M1_EMAX, 0)
  shared_exponent = jnp.maximum(shared_exponent, KERNEL_SCALE_MIN - SCALE_BIAS)
  scales = encode_scale_exponents(shared_exponent)
  scaled = w / decode_scales(scales)[..., None]
  return codes_to_blocks(_round_to_e2m1_codes(scaled)), scales


def check_blocks_and_scales(blocks, scales, where: str = "mxfp4") -> None:
  """Shape and dtype contract of the checkpoint layout; one-line errors naming the tensor."""
  _check_dtype(f"{where} blocks", blocks, jnp.uint8)
  _check_dtype(f"{where} scales", scales, jnp.uint8)
  if blocks.ndim < 2 or blocks.shape[-1] != BYTES_PER_BLOCK:
    raise ValueError(
        f"{where} blocks must have shape (..., K/32, {BYTES_PER_BLOCK}), got {tuple(blocks.shape)}")
  if tuple(scales.shape) != tuple(blocks.shape[:-1]):
    raise ValueError(f"{where} scales shape {tuple(scales.shape)} does not match blocks shape "
                     f"{tuple(blocks.shape)} (expected {tuple(blocks.shape[:-1])})")
  check_scales(scales, f"{where} scales")


def dequantize(blocks, scales, dtype=jnp.float32) -> jax.Array:
  """(blocks ``[..., N, K/32, 16]``, scales ``[..., N, K/32]``) -> ``[..., N, K]`` of ``dtype``."""
  check_float_dtype("dequantize: dtype", dtype)
  blocks, scales = jnp.asarray(blocks), jnp.asarray(scales)
  check_blocks_and_scales(blocks, scales, "dequantize:")
  values = decode_codes(blocks_to_codes(blocks)) * decode_scales(scales)[..., None]
  return values.reshape(*blocks.shape[:-2], blocks.shape[-2] * BLOCK_SIZE).astype(dtype)
