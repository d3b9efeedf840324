"""Two Triton operations that the Pallas lowering lacks, and a row's RMS inside a kernel.

`dot_accumulate(acc, a, b)`: ``acc + a @ b`` that Triton runs as one MMA into ``acc``.

Pallas lowers ``acc + pltriton.dot(a, b)`` to a dot from a zero accumulator (a splat Triton does
not fold) followed by adds: every K step of the grouped matmul paid one FADD per accumulator
element per dot and waited on each wgmma. This primitive lowers to ``tt.dot(a, b, acc)``; off
the Triton path (interpret mode, CPU) it is the plain ``acc + a @ b`` in float32.

`inline_asm(asm, args, ...)`: elementwise inline PTX with several results (Pallas' own
`pltriton.elementwise_inline_asm` lowers only one). Triton path only.

`load_row_rms(ref, row, eps)`: a row and its inverse RMS, for kernels that apply an RMSNorm
themselves (the router's top-k and decode attention).

`is_block(size)`: a size a kernel can tile by. `check_runs_here(what, interpret)`: the error
for a Triton kernel asked to compile off a GPU; `check_launch(num_warps, num_stages)`: its launch;
`check_arrays(where, **arrays)` and `check_float(where, **arrays)`: inputs that must be arrays,
and floats; `check_eps(eps, name)`: an RMSNorm epsilon a kernel is specialized on.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton
from jax.extend import core as jex_core
from jax.interpreters import mlir

from mxfp4_jax.argcheck import is_int, is_power_of_two

dot_accumulate_p = jex_core.Primitive("mxfp4_dot_accumulate")


def is_block(size) -> bool:
  """A size a Triton kernel can tile or load by: a power of two (as Triton's block shapes must
  be) of at least 16 (the narrowest side of a tensor-core dot)."""
  return is_power_of_two(size) and size >= 16


def check_runs_here(what: str, interpret: bool) -> None:
  """The Triton lowering compiles for a GPU only; elsewhere a kernel runs in interpret mode, if
  asked. Without this check the call fails deep inside Pallas. ``interpret`` must be a bool:
  jit hashes it as a static argument, and Pallas takes other values for its own options."""
  if not isinstance(interpret, bool):
    raise ValueError(f"interpret must be a bool, got {interpret!r}")
  if not interpret and jax.default_backend() != "gpu":
    raise ValueError(f"{what} compiles for a GPU only; on {jax.default_backend()} pass "
                     "interpret=True")


def check_launch(num_warps, num_stages, *, owner: str = "", **counts) -> None:
  """A Triton launch: ``num_warps`` a power of two and ``num_stages`` (and any other ``counts``,
  e.g. a program count) an int >= 1; a bad one otherwise fails an assertion deep in Triton's
  compiler, or passes silently in interpret mode. ``owner`` prefixes the names in the errors
  (``"KernelConfig."``)."""
  for name, value in (("num_warps", num_warps), ("num_stages", num_stages), *counts.items()):
    if not is_int(value) or value < 1:
      raise ValueError(f"{owner}{name} must be an int >= 1, got {value!r}")
  if not is_power_of_two(num_warps):
    raise ValueError(f"{owner}num_warps must be a power of two, got {num_warps}")


def dot_accumulate(acc: jax.Array, a: jax.Array, b: jax.Array, *, trans_b: bool = False):
  """acc [M, N] float32 + a [M, K] @ b [K, N] (b [N, K] with ``trans_b``), bf16 operands."""
  if trans_b:
    b = b.T
  return dot_accumulate_p.bind(acc, a, b)


@dot_accumulate_p.def_abstract_eval
def _abstract(acc, a, b):
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or acc.shape != (a.shape[0], b.shape[1]):
    raise ValueError(f"dot_accumulate: shapes {acc.shape} + {a.shape} @ {b.shape} do not fit")
  return jax.core.ShapedArray(acc.shape, acc.dtype)


def _reference(acc, a, b):
  return acc + jnp.dot(a, b, preferred_element_type=acc.dtype)


dot_accumulate_p.def_impl(_reference)
mlir.register_lowering(dot_accumulate_p, mlir.lower_fun(_reference, multiple_results=False))


def check_arrays(where: str = "", optional: tuple[str, ...] = (), **arrays) -> None:
  """A kernel's inputs are arrays (jax or numpy; None only for the names in ``optional``): a
  list, which ``jit`` would take as a tree of scalars, or a None, gets a one-line error naming
  it instead of failing in a shape check or deep in a trace."""
  for name, a in arrays.items():
    if not (a is None and name in optional or isinstance(a, (jax.Array, np.ndarray))):
      raise TypeError(f"{where}{name} must be an array, got {type(a).__name__}")


def check_float(where: str = "", **arrays) -> None:
  """Kernel inputs that must be floats (the dots take bf16 operands; an int array would be
  truncated, or give an int output with its fractions cut): a one-line error naming the first
  that is not, after ``where`` (e.g. "router: ")."""
  for name, a in arrays.items():
    if not jnp.issubdtype(a.dtype, jnp.floating):
      raise ValueError(f"{where}{name} must be a float array, got {a.dtype}")


def check_eps(eps, name: str) -> float:
  """An RMSNorm's epsilon, which a kernel is specialized on: a concrete, finite number >= 0."""
  try:
    value = float(eps)
  except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
    raise ValueError(f"{name} must be a concrete number >= 0, got {eps!r}") from None
  if not (math.isfinite(value) and value >= 0):
    raise ValueError(f"{name} must be a concrete number >= 0, got {eps!r}")
  return value


def load_row_rms(ref, row, eps: float):
  """Row ``row`` of a ``[N, D]`` ref inside a kernel -> (the row [1, W] float32, its columns
  mask [1, W], its inverse RMS [1, 1]). W is D rounded up to a power of two (a load's width);
  the columns past D read as zero. The RMS as the model's RMSNorm takes it: float32,
  ``rsqrt(mean(x ** 2) + eps)``."""
  d = ref.shape[1]
  in_row = lax.broadcasted_iota(jnp.int32, (1, pl.next_power_of_2(d)), 1) < d
  x = pltriton.load(ref.at[pl.ds(row, 1), pl.ds(0, in_row.shape[1])], mask=in_row,
                    other=0).astype(jnp.float32)
  return x, in_row, lax.rsqrt(jnp.sum(x * x, axis=1, keepdims=True) / d + eps)


def inline_asm(asm: str, args, *, constraints: str, pack: int,
               result_shape_dtypes) -> list[jax.Array]:
  """Elementwise inline assembly (`tt.elementwise_inline_asm`) with one or more results."""
  return inline_asm_p.bind(*args, asm=asm, constraints=constraints, pack=pack,
                           result_shape_dtypes=tuple(result_shape_dtypes))


inline_asm_p = jex_core.Primitive("mxfp4_inline_asm")
inline_asm_p.multiple_results = True


@inline_asm_p.def_abstract_eval
def _inline_asm_abstract(*args, result_shape_dtypes, **kwargs):
  del kwargs
  shapes = [a.shape for a in args] + [r.shape for r in result_shape_dtypes]
  if any(shape != shapes[0] for shape in shapes):
    raise ValueError(f"inline_asm: arguments and results must share one shape, got {shapes}")
  return [jax.core.ShapedArray(r.shape, r.dtype) for r in result_shape_dtypes]


def _register_triton_lowering():
  from jax._src.pallas.triton import lowering  # noqa: PLC0415 - the Pallas Triton backend
  from jax._src.lib.triton import dialect as tt_dialect  # noqa: PLC0415

  @lowering.register_lowering(dot_accumulate_p)
  def _dot_rule(ctx, acc, a, b):
    del ctx
    return tt_dialect.dot(a, b, acc)

  @lowering.register_lowering(inline_asm_p)
  def _asm_rule(ctx, *args, asm, constraints, pack, result_shape_dtypes):
    del result_shape_dtypes
    types = [mlir.aval_to_ir_type(ctx.context.mlir_ctx, aval) for aval in ctx.avals_out]
    results = tt_dialect.elementwise_inline_asm(types, asm, constraints=constraints, pure=True,
                                                packed_element=pack, args=args)
    return list(results) if len(types) > 1 else [results]


_register_triton_lowering()
