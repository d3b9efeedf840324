"""GPT-OSS's clamped SwiGLU, shared by the kernel epilogue, the reference and the model."""

import jax
import jax.numpy as jnp
import numpy as np

from mxfp4_jax.argcheck import is_concrete

SWIGLU_ALPHA = 1.702
SWIGLU_LIMIT = 7.0


def swiglu(glu: jax.Array, linear: jax.Array, alpha: float = SWIGLU_ALPHA,
           limit: float = SWIGLU_LIMIT) -> jax.Array:
  """``min(glu, limit) * sigmoid(alpha * min(glu, limit)) * (clip(linear, -limit, limit) + 1)``."""
  if is_concrete(limit) and not np.all(np.asarray(limit) > 0):  # clip(linear, 1, -1) would be -1
    raise ValueError(f"swiglu: limit must be > 0, got {limit!r}")
  glu = jnp.minimum(glu, limit)
  linear = jnp.clip(linear, -limit, limit)
  return glu * jax.nn.sigmoid(alpha * glu) * (linear + 1)
