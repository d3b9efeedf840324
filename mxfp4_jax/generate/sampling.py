"""Next-token sampling: greedy, temperature, top-k, top-p; reproducible for a key."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mxfp4_jax.argcheck import is_int, is_real


# Relative slack for float32 sums at the top-p cut (six of twelve tied tokens sum to
# 0.49999997, which must count as reaching 0.5).
TOP_P_ROUNDING = 1e-6


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  temperature: float = 1.0  # 0 (or below float32's smallest normal, which flushes to 0): greedy
  top_k: int = 0  # 0: no top-k cut
  top_p: float = 1.0  # 1: no nucleus cut

  def __post_init__(self):
    float32_max = float(jnp.finfo(jnp.float32).max)  # the logits' divisor is a float32
    if not (is_real(self.temperature) and 0 <= self.temperature <= float32_max):
      raise ValueError(f"temperature must be a number from 0 to float32's largest, "
                       f"{float32_max:.4g}, got {self.temperature!r}")
    if not (is_int(self.top_k) and self.top_k >= 0):
      raise ValueError(f"top_k must be an int >= 0, got {self.top_k!r}")
    if not (is_real(self.top_p) and 0 < self.top_p <= 1):
      raise ValueError(f"top_p must be a number in (0, 1], got {self.top_p!r}")
    # As Python floats: a Fraction or a numpy scalar passes the checks above, and a traced
    # array divides by neither the same way.
    object.__setattr__(self, "temperature", float(self.temperature))
    object.__setattr__(self, "top_p", float(self.top_p))


def sample(logits: jax.Array, key: jax.Array, params: SamplingParams) -> jax.Array:
  """logits [B, V] float32 -> token ids [B] int32."""
  if not isinstance(params, SamplingParams):
    raise ValueError(f"params must be a SamplingParams, got {params!r:.60}")
  if params.temperature < jnp.finfo(jnp.float32).tiny:  # a denormal divisor flushes to 0: 0 / 0
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  # Shifted so that the largest is 0 first: a tiny temperature then leaves the argmax at 0 and
  # the rest at -inf (greedy), instead of overflowing every logit to inf.
  shifted = logits - logits.max(axis=-1, keepdims=True)
  logits = shifted / params.temperature
  top_k = params.top_k if params.top_k < logits.shape[-1] else 0  # all of them: no cut
  if top_k or params.top_p < 1:
    # Cut in sorted order, so that ties at the cut keep exactly top_k tokens (or the smallest
    # prefix reaching top_p, up to `TOP_P_ROUNDING`), the lower token id first. Sorted before
    # the division: a huge temperature rounds every scaled logit to 0, which would leave the
    # order to the ties.
    order = jnp.argsort(shifted, axis=-1, descending=True, stable=True)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    keep = jnp.ones(sorted_logits.shape, bool)
    if top_k:
      keep &= jnp.arange(logits.shape[-1]) < top_k
    if params.top_p < 1:
      probs = jax.nn.softmax(jnp.where(keep, sorted_logits, -jnp.inf), axis=-1)
      before = jnp.cumsum(probs, axis=-1) - probs  # the mass before each token
      # The first token always stays: a top_p under float32's smallest normal flushes to 0,
      # and no mass is below 0.
      first = jnp.arange(logits.shape[-1]) == 0
      keep &= (before < params.top_p * (1 - TOP_P_ROUNDING)) | first
    keep = jnp.take_along_axis(keep, jnp.argsort(order, axis=-1), axis=-1)  # back to token ids
    logits = jnp.where(keep, logits, -jnp.inf)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
