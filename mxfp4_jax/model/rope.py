"""Rotary position embedding with YaRN scaling, as GPT-OSS uses it (NeoX half-split rotation)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mxfp4_jax.model.config import GptOssConfig


def yarn_concentration(scaling_factor: float) -> float:
  """YaRN's factor on cos and sin (GPT-OSS's: 0.1 ln(factor) + 1; HF's ``attention_factor``)."""
  return 0.1 * math.log(scaling_factor) + 1.0


def yarn_inv_freq_and_concentration(cfg: GptOssConfig) -> tuple[jax.Array, float]:
  """[head_dim / 2] inverse frequencies and the factor that multiplies cos and sin.

  Dimensions that rotate fewer than ``rope_beta_slow`` times over the original context are
  interpolated (divided by the scaling factor), those rotating more than ``rope_beta_fast``
  times keep their frequency, with a linear ramp between.
  """
  half = cfg.head_dim // 2
  freq = cfg.rope_theta ** (jnp.arange(0, cfg.head_dim, 2, dtype=jnp.float32) / cfg.head_dim)
  if cfg.rope_scaling_factor <= 1:
    return 1.0 / freq, 1.0
  concentration = yarn_concentration(cfg.rope_scaling_factor)
  low, high = cfg.yarn_ramp
  ramp = jnp.clip((jnp.arange(half, dtype=jnp.float32) - low) / (high - low), 0, 1)
  extrapolate = 1 - ramp  # 1: keep the frequency, 0: interpolate
  inv_freq = (1.0 / (cfg.rope_scaling_factor * freq)) * ramp + (1.0 / freq) * extrapolate
  return inv_freq, concentration


def rope_tables(cfg: GptOssConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
  """cos, sin for ``positions`` [..., T] -> each [..., T, head_dim / 2] float32."""
  inv_freq, concentration = yarn_inv_freq_and_concentration(cfg)
  angles = positions.astype(jnp.float32)[..., None] * inv_freq
  return jnp.cos(angles) * concentration, jnp.sin(angles) * concentration


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """x [B, T, heads, head_dim]; cos, sin [B, T, head_dim / 2]. Computed in float32."""
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)
