"""The MXFP4 grouped matmul: one entry point, a Pallas kernel on GPU and a jnp reference.

``grouped_matmul(x, w, group_sizes)`` computes, for rows sorted by expert,
``out[p] = act(x[p] @ W[e(p)] + bias[e(p)]) * row_weights[p]`` where ``e(p)`` is the expert whose
group holds row ``p``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from mxfp4_jax.argcheck import check_int32_range, is_concrete
from mxfp4_jax.kernels.reference import grouped_matmul_reference
from mxfp4_jax.kernels.schedule import check_experts_in_range, clip_group_sizes
from mxfp4_jax.kernels.swiglu import SWIGLU_ALPHA, SWIGLU_LIMIT, swiglu
from mxfp4_jax.kernels.triton_ops import check_runs_here
from mxfp4_jax.kernels.tuning import KernelConfig, pick_config
from mxfp4_jax.mxfp4.format import check_float_dtype
from mxfp4_jax.mxfp4.layout import PackedMXFP4, check_packed

BACKENDS = ("auto", "pallas", "reference")
ACTIVATIONS = (None, "swiglu")


def default_backend() -> str:
  return "pallas" if jax.default_backend() == "gpu" else "reference"


def _check_args(x, w, group_sizes, row_weights, row_experts, activation, backend):
  """The arguments of `grouped_matmul`, ``w`` already checked (`check_packed`)."""
  if backend not in BACKENDS:
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
  if activation not in ACTIVATIONS:
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
  if (activation == "swiglu") != w.swiglu_halves:
    raise ValueError(f"activation={activation!r} needs a weight packed with "
                     f"swiglu_halves={activation == 'swiglu'}, got swiglu_halves={w.swiglu_halves}")
  if x.ndim != 2 or x.shape[1] != w.in_features:
    raise ValueError(f"x must have shape [P, {w.in_features}] to match w, got {tuple(x.shape)}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"x must be a float array, got {x.dtype}")
  if (group_sizes is None) == (row_experts is None):
    raise ValueError("pass exactly one of group_sizes (rows sorted by expert) and row_experts "
                     "(each row's expert)")
  if row_experts is not None:
    _check_row_experts(row_experts, x.shape[0], w.num_experts)
  elif group_sizes.shape != (w.num_experts,) or not jnp.issubdtype(group_sizes.dtype, jnp.integer):
    raise ValueError(f"group_sizes must be an integer array of shape [{w.num_experts}] "
                     f"(one per expert), got {group_sizes.dtype}{list(group_sizes.shape)}")
  if row_weights is not None and (row_weights.shape != (x.shape[0],)
                                  or not jnp.issubdtype(row_weights.dtype, jnp.floating)):
    raise ValueError(f"row_weights must be a float array of shape [{x.shape[0]}], got "
                     f"{row_weights.dtype}{list(row_weights.shape)}")
  if group_sizes is not None and is_concrete(group_sizes):
    sizes = np.asarray(group_sizes)
    if (sizes < 0).any() or sizes.sum() > x.shape[0]:
      raise ValueError(f"group_sizes must be >= 0 and sum to at most P={x.shape[0]}, "
                       f"got sum {sizes.sum()} and min {sizes.min()}")


def _check_row_experts(row_experts, num_rows: int, num_experts: int) -> None:
  if row_experts.shape != (num_rows,) or not jnp.issubdtype(row_experts.dtype, jnp.integer):
    raise ValueError(f"row_experts must be an integer array of shape [{num_rows}] (one per row "
                     f"of x), got {row_experts.dtype}{list(row_experts.shape)}")
  check_experts_in_range(row_experts, num_experts, "row_experts")


def _number(value, name: str) -> float:
  """A static epilogue constant (the kernel is specialized on it): a finite number > 0."""
  try:
    number = float(value)
  except (TypeError, ValueError, jax.errors.ConcretizationTypeError) as e:
    raise TypeError(f"{name} must be a concrete number, got {value!r}") from e
  if not (math.isfinite(number) and number > 0):
    raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
  return number


def grouped_matmul(x: jax.Array, w: PackedMXFP4, group_sizes: jax.Array | None,
                   row_weights: jax.Array | None = None, *, row_experts: jax.Array | None = None,
                   activation: str | None = None,
                   backend: str = "auto", out_dtype=None, config: KernelConfig | None = None,
                   interpret: bool = False, swiglu_alpha: float = SWIGLU_ALPHA,
                   swiglu_limit: float = SWIGLU_LIMIT) -> jax.Array:
  """MXFP4 grouped matmul with the MoE epilogues fused.

  Args:
    x: ``[P, K]`` rows sorted by expert (bf16 for the kernel; other floats are cast).
    w: `PackedMXFP4` weights of E experts, ``[K, N]`` each, with an optional bias.
    group_sizes: ``[E]`` int; rows ``[sum(g[:e]), sum(g[:e + 1]))`` use expert ``e``. Rows past
      ``sum(group_sizes)`` are ignored and their output is zero. Under ``jit`` the sizes are
      clipped to fit ``P``; with concrete sizes a bad sum is an error. ``None`` with
      ``row_experts``.
    row_weights: optional ``[P]`` factor per row (the router weight), applied last.
    row_experts: instead of ``group_sizes``, ``[P]`` int: each row's expert, rows in any order.
      The kernel then runs one tile per row, which suits about one row per expert (a decode
      step's token-expert pairs, with no sort). Under ``jit`` a row with an expert outside
      ``[0, E)`` gives zeros; with concrete values it is an error.
    activation: ``None``, or ``"swiglu"`` for a gate_up weight packed with ``swiglu_halves``:
      the output is GPT-OSS's clamped SwiGLU of the glu and linear halves, ``[P, N / 2]``.
    backend: ``"pallas"`` (the kernel), ``"reference"`` (jnp), or ``"auto"``: pallas on GPU or
      with ``interpret``, the reference elsewhere.
      Both are differentiable in x, row_weights and w's bias; the kernel's gradient is the
      reference's, computed on the dequantized weights.
    out_dtype: defaults to ``x.dtype``.
    config: kernel block sizes; default from `tuning.pick_config`.
    interpret: run the Pallas kernel in interpret mode (any platform; slow but exact).
    swiglu_alpha, swiglu_limit: the SwiGLU's sigmoid scale and clamp (GPT-OSS's by default);
      static: the kernel is compiled for their values.
  Returns:
    ``[P, N]`` (``[P, N / 2]`` with SwiGLU) of ``out_dtype``.
  """
  check_int32_range(group_sizes=group_sizes, row_experts=row_experts)
  check_packed(w, "w")  # before x is made an array: w and x swapped would fail inside jnp
  if x is None:
    raise TypeError("x must be a float array [P, K], got None")
  as_array = lambda a: None if a is None else jnp.asarray(a)
  x, group_sizes, row_weights, row_experts = map(as_array, (x, group_sizes, row_weights,
                                                            row_experts))
  _check_args(x, w, group_sizes, row_weights, row_experts, activation, backend)
  # int32 from here on: in a narrower type, P (clipping the sizes) or E (checking the experts)
  # would wrap, e.g. 300 rows to 44 in uint8, 128 experts to -128 in int8.
  group_sizes, row_experts = (None if a is None else a.astype(jnp.int32)
                              for a in (group_sizes, row_experts))
  if config is not None and not isinstance(config, KernelConfig):
    raise TypeError(f"config must be a KernelConfig or None, got {type(config).__name__}")
  if group_sizes is not None:
    group_sizes = clip_group_sizes(group_sizes, x.shape[0])
  out_dtype = check_float_dtype("out_dtype", out_dtype or x.dtype)
  swiglu_alpha, swiglu_limit = _number(swiglu_alpha, "swiglu_alpha"), _number(swiglu_limit,
                                                                              "swiglu_limit")
  if backend == "auto":
    backend = "pallas" if interpret else default_backend()
  epilogue = dict(activation=activation, out_dtype=out_dtype, swiglu_alpha=swiglu_alpha,
                  swiglu_limit=swiglu_limit)
  if backend == "reference":
    return grouped_matmul_reference(x, w, group_sizes, row_weights, row_experts=row_experts,
                                    **epilogue)

  check_runs_here("grouped_matmul's backend='pallas'", interpret)
  out_cols = w.out_features // 2 if activation == "swiglu" else w.out_features
  if out_cols < 16:
    raise ValueError(f"the Pallas kernel needs at least 16 output features, got {out_cols}")
  if x.shape[0] == 0:
    return jnp.zeros((0, out_cols), out_dtype)
  config = config or pick_config(x.shape[0], w.num_experts, out_cols, w.values.shape[1],
                                 one_tile_per_row=row_experts is not None)
  out_block_n = config.out_block_n(activation == "swiglu")  # paired halves: block_n / 2 columns
  if out_block_n > out_cols:
    raise ValueError(f"config.block_n={config.block_n} writes {out_block_n} output features a "
                     f"program, more than the {out_cols} there are")
  static = (config, interpret, tuple(epilogue.items()))
  return _pallas_with_reference_gradient(x, w, group_sizes, row_weights, row_experts, static)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _pallas_with_reference_gradient(x, w, group_sizes, row_weights, row_experts, static):
  """The kernel, differentiated through the reference: Pallas has no gradient for the kernel,
  and the weights' gradient is not defined (they are 4-bit codes), so x's, the row weights' and
  the bias's come from the jnp reference on the same inputs (which dequantizes all experts)."""
  from mxfp4_jax.kernels.pallas_grouped import grouped_matmul_pallas, poisoning  # noqa: PLC0415

  config, interpret, epilogue = static
  return grouped_matmul_pallas(x, w, group_sizes, row_weights, row_experts, cfg=config,
                               interpret=interpret, poison=poisoning(), **dict(epilogue))


def _kernel_forward(x, w, group_sizes, row_weights, row_experts, static):
  inputs = (x, w, group_sizes, row_weights, row_experts)
  return _pallas_with_reference_gradient(*inputs, static), inputs


def _reference_backward(static, inputs, out_cotangent):
  _, _, epilogue = static

  def reference(x, w, group_sizes, row_weights, row_experts):
    return grouped_matmul_reference(x, w, group_sizes, row_weights, row_experts=row_experts,
                                    **dict(epilogue))

  return jax.vjp(reference, *inputs)[1](out_cotangent)


_pallas_with_reference_gradient.defvjp(_kernel_forward, _reference_backward)


__all__ = ["KernelConfig", "grouped_matmul", "pick_config", "swiglu"]
