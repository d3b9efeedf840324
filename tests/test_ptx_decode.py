"""The PTX decodes (`format.e2m1_bf16x2_ptx`, `format.e2m1_lut_ptx`) give the same bits as the
integer decode.

Interpret mode cannot run inline PTX, so the PTX text itself is executed here by a small
emulator of the eight instructions they use, with their PTX ISA semantics (prmt byte selection,
bf16x2 multiply with subnormal inputs, round to nearest even), over all byte values.
"""

import re

import numpy as np
import pytest

from mxfp4_jax.mxfp4 import format as fmt


def _bf16x2_mul(a, b):
  def halves(x):
    return [((x >> shift) & 0xFFFF).astype(np.uint32) << 16 for shift in (0, 16)]
  out = np.zeros_like(a)
  for shift, (ha, hb) in zip((0, 16), zip(halves(a), halves(b))):
    product = (ha.view(np.float32).astype(np.float64) * hb.view(np.float32).astype(np.float64))
    bits = product.astype(np.float32).view(np.uint32)  # exact here: the factors are 2**k
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
    out |= (rounded & 0xFFFF) << shift
  return out


def _prmt(a, b, selector):
  """Byte i of the result is byte (nibble i of the selector, bits 0-2) of b:a (the selector's
  sign-replicate bit is never set here)."""
  a, b, selector = np.broadcast_arrays(*(np.asarray(v, np.uint32) for v in (a, b, selector)))
  source = np.stack([(a >> (8 * i)) & 0xFF for i in range(4)]
                    + [(b >> (8 * i)) & 0xFF for i in range(4)], axis=-1)
  byte = lambda i: np.take_along_axis(source, ((selector >> (4 * i)) & 0x7)[..., None], -1)[..., 0]
  return sum(byte(i) << (8 * i) for i in range(4))


def run_ptx(text: str, operands: dict) -> dict:
  regs = dict(operands)
  value = lambda x: regs[x] if x in regs else np.uint32(int(x, 0))
  for statement in filter(None, (s.strip() for s in text.strip("{} ").split(";"))):
    if statement.startswith("mov.b32 {"):  # split a 32-bit register into two 16-bit ones
      low, high, src = re.findall(r"[$\w]+", statement.split(None, 1)[1])
      regs[low], regs[high] = regs[src] & 0xFFFF, regs[src] >> 16
      continue
    op, *args = re.split(r"[\s,]+", statement)
    if op == ".reg":
      continue
    dst, *src = args
    a = [value(x) for x in src]
    regs[dst] = {
        "mov.b32": lambda: a[0] + np.zeros_like(next(iter(operands.values()))),
        "prmt.b32": lambda: _prmt(a[0], a[1], a[2]),
        "shl.b32": lambda: (a[0] << np.uint32(int(src[1]))) & np.uint32(0xFFFFFFFF),
        "shr.b32": lambda: a[0] >> np.uint32(int(src[1])),
        "and.b32": lambda: a[0] & a[1],
        "mul.lo.u32": lambda: (a[0].astype(np.uint64) * np.uint64(a[1])) & np.uint64(0xFFFFFFFF),
        "or.b32": lambda: a[0] | a[1],
        "mul.rn.bf16x2": lambda: _bf16x2_mul(a[0], a[1]),
    }[op]().astype(np.uint32)
  return regs


def _lanes_and_scales(seed: int):
  """[1024, 4] bytes (every byte value in every lane) and random kernel-range scale bytes, the
  range's ends included."""
  rng = np.random.default_rng(seed)
  byte_values = np.repeat(np.arange(256, dtype=np.uint32), 4)
  lanes = np.stack([np.roll(byte_values, shift) for shift in range(4)], axis=-1)
  scales = rng.integers(fmt.KERNEL_SCALE_MIN, fmt.KERNEL_SCALE_MAX + 1, lanes.shape)
  scales[:8] = [[fmt.KERNEL_SCALE_MIN] * 4, [fmt.KERNEL_SCALE_MAX] * 4] * 4
  return lanes, scales


def _words(lanes) -> np.ndarray:  # four lanes -> one 32-bit register, lane 0 lowest
  return (lanes[:, 0] | lanes[:, 1] << 8 | lanes[:, 2] << 16 | lanes[:, 3] << 24).astype(np.uint32)


def _factors(scales) -> tuple[np.ndarray, np.ndarray]:
  """bf16x2 registers of `bf16x2_factor_bits` for lanes (0, 1) and (2, 3)."""
  factor = np.asarray(fmt.bf16x2_factor_bits(scales.astype(np.int32))).astype(np.uint32)
  return ((factor[:, 0] | factor[:, 1] << 16).astype(np.uint32),
          (factor[:, 2] | factor[:, 3] << 16).astype(np.uint32))


def _unpack(regs, first: str, second: str) -> np.ndarray:  # two bf16x2 registers -> [n, 4] bits
  return np.stack([regs[first] & 0xFFFF, regs[first] >> 16,
                   regs[second] & 0xFFFF, regs[second] >> 16], axis=-1)


def _want(codes, scales) -> np.ndarray:
  return np.asarray(fmt.e2m1_to_bf16_bits(codes.astype(np.int32), scales.astype(np.int32)))


@pytest.mark.parametrize("nibble", ["low", "high"])
def test_ptx_decode_equals_integer_decode(nibble):
  lanes, scales = _lanes_and_scales(0)
  regs = run_ptx(fmt.e2m1_bf16x2_ptx(nibble), {"$2": _words(lanes), **dict(zip(
      ("$3", "$4"), _factors(scales)))})
  codes = lanes & 0xF if nibble == "low" else lanes >> 4
  np.testing.assert_array_equal(_unpack(regs, "$0", "$1"), _want(codes, scales))


def test_lut_decode_equals_integer_decode():
  """One word of 4 bytes of one row: one scale for its low nibbles, one for its high nibbles."""
  lanes, scales = _lanes_and_scales(3)
  low_scales, high_scales = scales[:, :1], scales[:, 1:2]
  pair = lambda s: fmt.scale_bf16x2_bits(s[:, 0])
  tables = dict(zip(("$11", "$12", "$13"), (np.uint32(t) for t in fmt.LUT_REGISTERS)))
  regs = run_ptx(fmt.e2m1_lut_ptx(), {"$8": _words(lanes), "$9": pair(low_scales),
                                           "$10": pair(high_scales), **tables})
  got = lambda first: np.stack([regs[f"${first + i}"] for i in range(4)], axis=-1)
  per_lane = lambda s: np.broadcast_to(s, lanes.shape)
  np.testing.assert_array_equal(got(0), _want(lanes & 0xF, per_lane(low_scales)))
  np.testing.assert_array_equal(got(4), _want(lanes >> 4, per_lane(high_scales)))


def test_layout_probe_operand_matches_its_reference():
  """`experiments.layout_probe`: its PTX and register assembly give the operand its float64
  reference decodes from the same bytes (the candidate layout is self-consistent)."""
  from experiments import layout_probe  # noqa: PLC0415

  rng = np.random.default_rng(5)
  groups = 2
  words = rng.integers(0, 2**32, (groups, 128), dtype=np.uint64).astype(np.uint32)
  scale_words = rng.integers(110, 130, (groups, 32)).astype(np.uint8).view(np.uint32)
  shaped = words.reshape(groups, 8, 4, 2, 2)  # (G, g, a, u, h), as decode_block views them
  factor = np.broadcast_to(np.asarray(layout_probe.scale_factors(scale_words)), shaped.shape)
  tables = dict(zip(("$11", "$12", "$13"), (np.uint32(t) for t in fmt.LUT_REGISTERS)))
  regs = run_ptx(fmt.e2m1_lut_ptx(pairs="bytes"), {"$8": shaped.ravel(), "$9": factor.ravel(),
                                                   "$10": factor.ravel(), **tables})
  operand = layout_probe.assemble_operand([regs[f"${i}"].reshape(shaped.shape) for i in range(8)])
  got = (np.asarray(operand).astype(np.uint32) << 16).view(np.float32).astype(np.float64)

  dense = layout_probe.reference_dense(words[None, None], scale_words[None, None])[0]
  np.testing.assert_array_equal(got, dense.T)  # operand [N, K], dense [K, N]
