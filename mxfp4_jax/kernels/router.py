"""The MoE router of a decode step in one kernel: RMSNorm, router logits, top-k and the softmax
over the chosen experts, writing the normed rows the expert matmul reads (each token's row k
times, token-major).

In XLA the same work is eight small kernels a layer (the norm's reduction and scaling, the
repeat, the router dot split into a multiply and a reduction, bias, sort, slice, softmax), each
about as long as its launch at decode sizes. `rms_norm` and `top_k_softmax` are the jnp form:
the reference, and the path for every other size (a prefill's router is a real matmul).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

ROWS_PER_PROGRAM = 16  # the dot's smallest M
MAX_CHUNK = 256  # hidden features per load: a [16, 256] x piece and a [256, E] weight piece


def hidden_chunks(hidden: int) -> list[tuple[int, int]]:
  """(start, size) pieces covering ``hidden``: sizes powers of two (Triton's block shapes), at
  most `MAX_CHUNK`. Static, so every load is known up front and can be in flight at once (a
  loop over chunks waited on each load in turn: 30 us a call)."""
  pieces, start = [], 0
  while start < hidden:
    size = min(MAX_CHUNK, 1 << ((hidden - start).bit_length() - 1))
    pieces.append((start, size))
    start += size
  return pieces


def rms_norm(x, scale, eps: float):
  """x [..., D] -> x * rsqrt(mean(x^2) + eps) * scale in float32, back in x's dtype."""
  xf = x.astype(jnp.float32)
  xf = xf * lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
  return (xf * scale).astype(x.dtype)


def top_k_softmax(logits, k: int):
  """logits [N, E] -> (experts [N, k] int32, weights [N, k] float32, a softmax over those k)."""
  top_logits, experts = lax.top_k(logits.astype(jnp.float32), k)
  return experts, jax.nn.softmax(top_logits, axis=-1)


def kernel_supports(hidden: int, num_experts: int, dtype) -> bool:
  """Shapes `route_rows_pallas` takes: a hidden size in pieces a dot takes (multiples of 16),
  a power-of-two number of experts that fills a dot's N, bf16 activations."""
  return (hidden % 16 == 0 and num_experts >= 16 and num_experts & (num_experts - 1) == 0
          and jnp.dtype(dtype) == jnp.bfloat16)


def _check_args(x, norm_scale, weight, bias, k: int) -> None:
  if x.ndim != 2 or weight.ndim != 2 or weight.shape[0] != x.shape[1]:
    raise ValueError(f"router: x must be [tokens, D] and weight [D, experts], got "
                     f"{list(x.shape)} and {list(weight.shape)}")
  hidden, num_experts = weight.shape
  if norm_scale.shape != (hidden,) or bias.shape != (num_experts,):
    raise ValueError(f"router: norm_scale must be [{hidden}] and bias [{num_experts}], got "
                     f"{list(norm_scale.shape)} and {list(bias.shape)}")
  if not kernel_supports(hidden, num_experts, x.dtype) or weight.dtype != jnp.bfloat16:
    raise ValueError(f"router kernel: needs bf16 x and weight, D a multiple of 16 and a "
                     f"power-of-two number of experts >= 16; got x {x.dtype}, weight "
                     f"{weight.dtype}, D={hidden}, {num_experts} experts")
  if not 1 <= k <= num_experts:
    raise ValueError(f"router: k must be in [1, {num_experts}], got {k}")


def _kernel(x_ref, scale_ref, weight_ref, bias_ref, rows_ref, experts_ref, weights_ref, *,
            k: int, eps: float, num_rows: int):
  hidden, num_experts = weight_ref.shape
  row0 = pl.program_id(0) * ROWS_PER_PROGRAM
  rows = row0 + lax.broadcasted_iota(jnp.int32, (ROWS_PER_PROGRAM,), 0)
  valid = rows < num_rows
  token = jnp.minimum(rows, num_rows - 1) // k  # output row p is token p // k's choice p % k

  def piece(start, size):  # [16, size] float32 of each row's token
    return x_ref[token, pl.ds(start, size)].astype(jnp.float32)

  squares = sum(jnp.sum(jnp.square(piece(*c)), axis=1) for c in hidden_chunks(hidden))
  inv_rms = lax.rsqrt(squares / hidden + eps)[:, None]
  logits = jnp.zeros((ROWS_PER_PROGRAM, num_experts), jnp.float32)
  for start, size in hidden_chunks(hidden):
    cols = pl.ds(start, size)
    normed = (piece(start, size) * inv_rms * scale_ref[cols][None, :]).astype(jnp.bfloat16)
    pltriton.store(rows_ref.at[pl.ds(row0, ROWS_PER_PROGRAM), cols], normed, mask=valid[:, None])
    logits += pltriton.dot(normed, weight_ref[cols, :])
  # Rounded as XLA rounds the bf16 matmul and the bias add, so the same experts win.
  as_bf16 = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)
  logits = as_bf16(as_bf16(logits) + bias_ref[...].astype(jnp.float32)[None, :])

  # Top k by k rounds of max (ties to the lower expert, as lax.top_k), then this row's choice.
  column = lax.broadcasted_iota(jnp.int32, logits.shape, 1)
  choice = rows % k
  top = jnp.max(logits, axis=1)
  expert, chosen_logit = jnp.zeros_like(choice), top
  total = jnp.zeros_like(top)  # the softmax's denominator, relative to the top logit
  for i in range(k):
    best = top if i == 0 else jnp.max(logits, axis=1)
    index = jnp.min(jnp.where(logits == best[:, None], column, num_experts), axis=1)
    expert = jnp.where(choice == i, index, expert)
    chosen_logit = jnp.where(choice == i, best, chosen_logit)
    total += jnp.exp(best - top)
    logits = jnp.where(column == index[:, None], -jnp.inf, logits)
  out = pl.ds(row0, ROWS_PER_PROGRAM)
  pltriton.store(experts_ref.at[out], expert, mask=valid)
  pltriton.store(weights_ref.at[out], jnp.exp(chosen_logit - top) / total, mask=valid)


@functools.partial(jax.jit, static_argnames=("k", "eps", "interpret"))
def route_rows_pallas(x, norm_scale, weight, bias, *, k: int, eps: float, interpret: bool = False):
  """A decode step's router: `rms_norm`, the router's logits and `top_k_softmax`, with each
  token's normed row repeated k times.

  x [N, D] bf16; norm_scale [D]; weight [D, E]; bias [E] -> (rows [N k, D] bf16, experts [N k]
  int32, weights [N k] float32), row p being token p // k with its (p % k)-th expert.
  """
  _check_args(x, norm_scale, weight, bias, k)
  num_rows = x.shape[0] * k
  # A masked store past an array's end is fine on the GPU; interpret mode slices, so there the
  # outputs are whole programs of rows and are cut after.
  padded = -(-num_rows // ROWS_PER_PROGRAM) * ROWS_PER_PROGRAM if interpret else num_rows
  kernel = functools.partial(_kernel, k=k, eps=eps, num_rows=num_rows)
  rows, experts, weights = pl.pallas_call(
      kernel,
      out_shape=[jax.ShapeDtypeStruct((padded, x.shape[1]), jnp.bfloat16),
                 jax.ShapeDtypeStruct((padded,), jnp.int32),
                 jax.ShapeDtypeStruct((padded,), jnp.float32)],
      grid=(pl.cdiv(num_rows, ROWS_PER_PROGRAM),),
      compiler_params=pltriton.CompilerParams(num_warps=8, num_stages=1),
      interpret=interpret,
      name="moe_router",
  )(x, norm_scale.astype(jnp.float32), weight, bias)
  return rows[:num_rows], experts[:num_rows], weights[:num_rows]
