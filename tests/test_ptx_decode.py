"""The bf16x2 PTX decode (`format.e2m1_bf16x2_ptx`) gives the same bits as the integer decode.

Interpret mode cannot run inline PTX, so the PTX text itself is executed here by a small
emulator of the six instructions it uses, with their PTX ISA semantics (prmt byte selection,
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
  source = [(a >> (8 * i)) & 0xFF for i in range(4)] + [(b >> (8 * i)) & 0xFF for i in range(4)]
  return sum(source[(selector >> (4 * i)) & 0x7] << (8 * i) for i in range(4))


def run_ptx(text: str, operands: dict) -> dict:
  regs = dict(operands)
  value = lambda x: regs[x] if x in regs else np.uint32(int(x, 0))
  for statement in filter(None, (s.strip() for s in text.strip("{} ").split(";"))):
    op, *args = re.split(r"[\s,]+", statement)
    if op == ".reg":
      continue
    dst, *src = args
    a = [value(x) for x in src]
    regs[dst] = {
        "mov.b32": lambda: a[0] + np.zeros_like(operands["$2"]),
        "prmt.b32": lambda: _prmt(a[0], a[1], int(src[2], 0)),
        "shl.b32": lambda: (a[0] << np.uint32(int(src[1]))) & np.uint32(0xFFFFFFFF),
        "and.b32": lambda: a[0] & a[1],
        "or.b32": lambda: a[0] | a[1],
        "mul.rn.bf16x2": lambda: _bf16x2_mul(a[0], a[1]),
    }[op]().astype(np.uint32)
  return regs


@pytest.mark.parametrize("nibble", ["low", "high"])
def test_ptx_decode_equals_integer_decode(nibble):
  rng = np.random.default_rng(0)
  byte_values = np.repeat(np.arange(256, dtype=np.uint32), 4)  # every byte in every lane
  lanes = np.stack([np.roll(byte_values, shift) for shift in range(4)], axis=-1)  # [1024, 4]
  scales = rng.integers(fmt.KERNEL_SCALE_MIN, fmt.KERNEL_SCALE_MAX + 1, lanes.shape)
  scales[:8] = [[fmt.KERNEL_SCALE_MIN] * 4, [fmt.KERNEL_SCALE_MAX] * 4] * 4  # the range's ends
  factor = (scales.astype(np.uint32) << 7)  # bf16 bits of 2**(scale - 127)
  word = lanes[:, 0] | lanes[:, 1] << 8 | lanes[:, 2] << 16 | lanes[:, 3] << 24
  regs = run_ptx(fmt.e2m1_bf16x2_ptx(nibble), {
      "$2": word.astype(np.uint32),
      "$3": (factor[:, 0] | factor[:, 1] << 16).astype(np.uint32),
      "$4": (factor[:, 2] | factor[:, 3] << 16).astype(np.uint32)})
  got = np.stack([regs["$0"] & 0xFFFF, regs["$0"] >> 16, regs["$1"] & 0xFFFF, regs["$1"] >> 16],
                 axis=-1)
  codes = lanes & 0xF if nibble == "low" else lanes >> 4
  want = np.asarray(fmt.e2m1_to_bf16_bits(codes.astype(np.int32), scales.astype(np.int32)))
  np.testing.assert_array_equal(got, want)
