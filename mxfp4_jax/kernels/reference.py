"""Pure-jnp grouped matmul on the dequantized weights: the tests' oracle and the CPU fallback."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mxfp4_jax.kernels.schedule import sort_by_expert, valid_experts
from mxfp4_jax.kernels.swiglu import swiglu
from mxfp4_jax.mxfp4.layout import PackedMXFP4, dequantize_packed


def expert_of_row(group_sizes: jax.Array, num_rows: int) -> jax.Array:
  """[P] int32: the expert each row belongs to; E for rows past sum(group_sizes)."""
  # compare_all: no while loop (see `schedule._tiles`); [P, E] comparisons are cheap.
  return jnp.searchsorted(jnp.cumsum(group_sizes), jnp.arange(num_rows), side="right",
                          method="compare_all").astype(jnp.int32)


def moe_epilogue(h, w: PackedMXFP4, expert, row_weights=None, *, activation: str | None,
                 out_dtype, swiglu_alpha: float, swiglu_limit: float):
  """``[P, N]`` float32 sums ``x @ W[e]`` -> the grouped matmul's output: bias, activation, row
  weights, zero rows whose ``expert`` [P] is E (none), cast. Shared by the reference and the
  split-K kernel path."""
  if w.bias is not None:
    h = h + jnp.take(w.bias, jnp.minimum(expert, w.num_experts - 1), axis=0)
  if activation == "swiglu":
    half = w.out_features // 2
    h = swiglu(h[:, :half], h[:, half:], alpha=swiglu_alpha, limit=swiglu_limit)
  if row_weights is not None:
    h = h * row_weights.astype(jnp.float32)[:, None]
  return jnp.where((expert < w.num_experts)[:, None], h, 0).astype(out_dtype)


def _ragged_sums(x, w: PackedMXFP4, group_sizes):
  compute_dtype = jnp.float32 if x.dtype == jnp.float32 else jnp.bfloat16
  dense = dequantize_packed(w, compute_dtype)  # [E, K, N]
  return jax.lax.ragged_dot(x.astype(compute_dtype), dense, group_sizes,
                            precision=jax.lax.Precision.HIGHEST,
                            preferred_element_type=jnp.float32)  # [P, N]


def grouped_matmul_reference(x, w: PackedMXFP4, group_sizes=None, row_weights=None, *,
                             row_experts=None, **epilogue):
  """The reference backend of `mxfp4_jax.kernels.grouped_matmul`, which checks the arguments and
  fills in the epilogue's before calling it (call ``grouped_matmul(..., backend="reference")``).
  Multiplies in float32 for float32 x, else in bf16 (the kernel's operands), and accumulates in
  float32."""
  if row_experts is None:
    expert = expert_of_row(group_sizes, x.shape[0])
    return moe_epilogue(_ragged_sums(x, w, group_sizes), w, expert, row_weights, **epilogue)
  expert = valid_experts(row_experts, w.num_experts)  # E (no expert) for one outside [0, E)
  # Sorted for ragged_dot, then put back; rows of no expert sort last, past every group.
  order, position, sizes = sort_by_expert(expert, w.num_experts + 1, "argsort")
  h = _ragged_sums(x[order], w, sizes[:w.num_experts])[position]
  return moe_epilogue(h, w, expert, row_weights, **epilogue)
