"""float64 helpers shared by the numerics tests (independent of mxfp4_jax's own code)."""

import numpy as np


def rel_err(out, ref) -> float:
  """||out - ref|| / ||ref|| in float64; ``out`` may be a bf16 jax array."""
  out = np.asarray(np.asarray(out, np.float32), np.float64)
  return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def np_rope(x, cos, sin):
  """Half-split RoPE in float64: x [..., head_dim]; cos and sin broadcast to [..., head_dim / 2]."""
  x1, x2 = np.split(np.asarray(x, np.float64), 2, axis=-1)
  return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
