"""MXFP4: the format (`format`) and the kernel layout contract (`layout`)."""

from mxfp4_jax.mxfp4.format import (BITS_PER_WEIGHT, BLOCK_SIZE, E2M1_VALUES, decode_scales,
                                    dequantize, quantize)
from mxfp4_jax.mxfp4.layout import (PackedMXFP4, deinterleave_swiglu, dequantize_packed,
                                    interleave_swiglu, pack, unpack)

__all__ = [
    "BITS_PER_WEIGHT", "BLOCK_SIZE", "E2M1_VALUES", "PackedMXFP4", "decode_scales",
    "deinterleave_swiglu", "dequantize", "dequantize_packed", "interleave_swiglu", "pack",
    "quantize", "unpack",
]
