"""The MoE router as one Pallas (Triton lowering) kernel: the RMSNorm before the MoE, the
router's logits, top-k and the softmax over the chosen k.

XLA runs these as about eight small kernels a layer (the norm's reduction and scaling, the
router's matrix-vector product as a multiply and a reduction, a convert, top-k, the softmax, a
slice). A decode step's few tokens make each cost its launch and dependency rather than its
work, so one kernel does them all: a program takes ``block_t`` tokens, sums their squares over
the hidden size, then writes the normalized rows while their dot with the router weight
accumulates, and picks the top k from the logits it holds.

`route_reference` is the same computation in jnp (the definition, the CPU path and the float32
path); `route` picks one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

BLOCK_T = 16  # tokens a program routes (the smallest row count of a tensor-core dot)
BLOCK_D = 64  # hidden features a loop step reads (2880 = 45 x 64)


def route_reference(x, norm_scale, weight, bias, *, k: int, eps: float, copies: int = 1):
  """x [N, D] (the residual stream), norm_scale [D], weight [D, E], bias [E] ->
  (normed [N copies, D] of x.dtype, experts [N, k] int32, weights [N, k] float32).

  ``normed`` is RMSNorm(x) rounded to x's dtype, each row ``copies`` times in a row (a decode
  step's k rows of one token); the logits are ``normed @ weight + bias`` in x's dtype, as
  GPT-OSS's router computes them; ``weights`` is the softmax over the top k."""
  xf = x.astype(jnp.float32)
  xf = xf * lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
  normed = (xf * norm_scale).astype(x.dtype)
  logits = normed @ weight.astype(x.dtype) + bias.astype(x.dtype)  # [N, E]
  top, experts = lax.top_k(logits.astype(jnp.float32), k)
  return (jnp.repeat(normed, copies, axis=0), experts.astype(jnp.int32),
          jax.nn.softmax(top, axis=-1))


def kernel_supports(x, weight, k: int) -> str | None:
  """Why the kernel cannot route these (None if it can)."""
  d, e = weight.shape
  if x.dtype != jnp.bfloat16:
    return f"x is {x.dtype}, the kernel takes bfloat16"
  if d % BLOCK_D:
    return f"the hidden size {d} is not a multiple of {BLOCK_D}"
  if k & (k - 1) or k > e:
    return f"k={k} is not a power of two no larger than the {e} experts"
  return None


def route(x, norm_scale, weight, bias, *, k: int, eps: float, copies: int = 1,
          backend: str = "reference", interpret: bool = False):
  """`route_reference`'s result; ``backend="pallas"`` runs the kernel (interpret mode on any
  platform with ``interpret``). Shapes are checked here, with one-line errors."""
  n, d = x.shape
  if norm_scale.shape != (d,) or weight.ndim != 2 or weight.shape[0] != d:
    raise ValueError(f"router: x [N, {d}] needs norm_scale [{d}] and weight [{d}, E], got "
                     f"{tuple(norm_scale.shape)} and {tuple(weight.shape)}")
  if bias.shape != (weight.shape[1],):
    raise ValueError(f"router: bias must have shape [{weight.shape[1]}], got {tuple(bias.shape)}")
  if backend == "reference":
    return route_reference(x, norm_scale, weight, bias, k=k, eps=eps, copies=copies)
  why = kernel_supports(x, weight, k)
  if why:
    raise ValueError(f"router kernel: {why}")
  if n == 0:
    return x, jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.float32)
  return _route_pallas(x, norm_scale, weight, bias, k=k, eps=eps, copies=copies,
                       interpret=interpret)


def _kernel(x_ref, scale_ref, weight_ref, bias_ref, normed_ref, experts_ref, weights_ref, *,
            k: int, eps: float, copies: int, num_experts: int):
  n, d = x_ref.shape
  padded_experts = weight_ref.shape[1]
  # Rows past the last token re-read it: they compute its results again and store them to its
  # row, so no store needs a mask and no output is padded.
  rows = jnp.minimum(pl.program_id(0) * BLOCK_T + lax.broadcasted_iota(jnp.int32, (BLOCK_T,), 0),
                     n - 1)
  x_block = lambda c: x_ref[rows, pl.ds(pl.multiple_of(c * BLOCK_D, BLOCK_D), BLOCK_D)]

  def sum_squares(c, total):
    xc = x_block(c).astype(jnp.float32)
    return total + jnp.sum(xc * xc, axis=1)

  num_blocks = d // BLOCK_D
  inv_rms = lax.rsqrt(lax.fori_loop(0, num_blocks, sum_squares, jnp.zeros((BLOCK_T,), jnp.float32))
                      / d + eps)  # [T]

  def normalize_and_dot(c, logits):
    cols = pl.ds(pl.multiple_of(c * BLOCK_D, BLOCK_D), BLOCK_D)
    normed = ((x_block(c).astype(jnp.float32) * inv_rms[:, None]) * scale_ref[cols][None, :]
              ).astype(normed_ref.dtype)  # [T, BLOCK_D]
    for copy in range(copies):
      normed_ref[rows * copies + copy, cols] = normed
    return logits + pltriton.dot(normed, weight_ref[cols, :])  # [T, E'] float32

  logits = lax.fori_loop(0, num_blocks, normalize_and_dot,
                         jnp.zeros((BLOCK_T, padded_experts), jnp.float32))
  # Rounded as the reference rounds them: the product, then the sum with the bias, in bf16.
  logits = (logits.astype(jnp.bfloat16).astype(jnp.float32)
            + bias_ref[...].astype(jnp.float32)[None, :]).astype(jnp.bfloat16).astype(jnp.float32)
  expert_ids = lax.broadcasted_iota(jnp.int32, logits.shape, 1)
  logits = jnp.where(expert_ids < num_experts, logits, -jnp.inf)

  # Top k by k rounds of (max, lowest index holding it), as lax.top_k breaks ties.
  slot = lax.broadcasted_iota(jnp.int32, (BLOCK_T, k), 1)
  top = jnp.zeros((BLOCK_T, k), jnp.float32)
  chosen = jnp.zeros((BLOCK_T, k), jnp.int32)
  for j in range(k):
    best = jnp.max(logits, axis=1)  # [T]
    index = jnp.min(jnp.where(logits == best[:, None], expert_ids, padded_experts), axis=1)
    top = jnp.where(slot == j, best[:, None], top)
    chosen = jnp.where(slot == j, index[:, None], chosen)
    logits = jnp.where(expert_ids == index[:, None], -jnp.inf, logits)
  # Softmax over the k: the first is the largest.
  exp = jnp.exp(top - jnp.max(top, axis=1, keepdims=True))
  experts_ref[rows, :] = chosen
  weights_ref[rows, :] = exp / jnp.sum(exp, axis=1, keepdims=True)


@functools.partial(jax.jit, static_argnames=("k", "eps", "copies", "interpret"))
def _route_pallas(x, norm_scale, weight, bias, *, k: int, eps: float, copies: int,
                  interpret: bool):
  n, d = x.shape
  num_experts = weight.shape[1]
  # A dot's operand is at least 16 wide and a power of two: fewer experts get zero columns,
  # which the kernel masks out of the top k.
  padded_experts = max(16, pl.next_power_of_2(num_experts))
  if padded_experts != num_experts:
    weight = jnp.pad(weight, ((0, 0), (0, padded_experts - num_experts)))
    bias = jnp.pad(bias, (0, padded_experts - num_experts))
  kernel = functools.partial(_kernel, k=k, eps=eps, copies=copies, num_experts=num_experts)
  return pl.pallas_call(
      kernel,
      out_shape=(jax.ShapeDtypeStruct((n * copies, d), x.dtype), jax.ShapeDtypeStruct((n, k), jnp.int32),
                 jax.ShapeDtypeStruct((n, k), jnp.float32)),
      grid=(pl.cdiv(n, BLOCK_T),),
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=3),
      interpret=interpret,
      name="moe_router",
  )(x, norm_scale.astype(jnp.float32), weight.astype(jnp.bfloat16), bias)
