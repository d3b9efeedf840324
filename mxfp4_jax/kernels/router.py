"""The MoE router: the RMSNorm before the MoE, the router's logits, top-k and the softmax over
the chosen k, in three forms (`BACKENDS`).

XLA runs these as about eight small kernels a layer at decode sizes (the norm's reduction and
scaling, the router's matrix-vector product as a multiply and a reduction, a convert, top-k,
the softmax, a slice), and a decode step's few tokens make each cost its launch and dependency
rather than its work:

- ``"xla"``: `route_reference`, the definition (also the CPU and float32 path).
- ``"top_k"``: XLA computes the norm and the router's product (spread over the whole GPU); one
  Pallas kernel adds the bias and takes the top k and the softmax.
- ``"fused"``: one Pallas kernel for all of it: a program takes `BLOCK_T` tokens, sums their
  squares over the hidden size, then writes the normalized rows while their dot with the router
  weight accumulates, and picks the top k from the logits it holds. One program reads the whole
  router weight, one `BLOCK_D` slice at a time.
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
BACKENDS = ("xla", "top_k", "fused")


def route_reference(x, norm_scale, weight, bias, *, k: int, eps: float, copies: int = 1):
  """x [N, D] (the residual stream), norm_scale [D], weight [D, E], bias [E] ->
  (normed [N copies, D] of x.dtype, experts [N, k] int32, weights [N, k] float32).

  ``normed`` is RMSNorm(x) rounded to x's dtype, each row ``copies`` times in a row (a decode
  step's k rows of one token); the logits are ``normed @ weight + bias`` in x's dtype, as
  GPT-OSS's router computes them; ``weights`` is the softmax over the top k."""
  normed, product = _normed_and_product(x, norm_scale, weight, eps)
  logits = product + bias.astype(x.dtype)  # [N, E]
  top, experts = lax.top_k(logits.astype(jnp.float32), k)
  return (jnp.repeat(normed, copies, axis=0), experts.astype(jnp.int32),
          jax.nn.softmax(top, axis=-1))


def _normed_and_product(x, norm_scale, weight, eps: float):
  xf = x.astype(jnp.float32)
  xf = xf * lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
  normed = (xf * norm_scale).astype(x.dtype)
  return normed, normed @ weight.astype(x.dtype)  # [N, D], [N, E] (the logits less the bias)


def _add_bias(product, bias_ref):
  """The logits from the float32 [T, E'] product, rounded as the reference rounds them: the
  product, then its sum with the bias, in bf16."""
  product = product.astype(jnp.bfloat16).astype(jnp.float32)
  return (product + bias_ref[...].astype(jnp.float32)[None, :]).astype(jnp.bfloat16).astype(
      jnp.float32)


def kernel_supports(x, weight, k: int, backend: str) -> str | None:
  """Why the ``backend`` kernel cannot route these (None if it can)."""
  d, e = weight.shape
  if x.dtype != jnp.bfloat16:
    return f"x is {x.dtype}, the kernel takes bfloat16"
  if backend == "fused" and d % BLOCK_D:
    return f"the hidden size {d} is not a multiple of {BLOCK_D}"
  if k & (k - 1) or k > e:
    return f"k={k} is not a power of two no larger than the {e} experts"
  return None


def route(x, norm_scale, weight, bias, *, k: int, eps: float, copies: int = 1,
          backend: str = "xla", interpret: bool = False):
  """`route_reference`'s result, computed by ``backend`` (one of `BACKENDS`; a kernel runs in
  interpret mode on any platform with ``interpret``). Shapes are checked here, with one-line
  errors."""
  n, d = x.shape
  if norm_scale.shape != (d,) or weight.ndim != 2 or weight.shape[0] != d:
    raise ValueError(f"router: x [N, {d}] needs norm_scale [{d}] and weight [{d}, E], got "
                     f"{tuple(norm_scale.shape)} and {tuple(weight.shape)}")
  if bias.shape != (weight.shape[1],):
    raise ValueError(f"router: bias must have shape [{weight.shape[1]}], got {tuple(bias.shape)}")
  if backend not in BACKENDS:
    raise ValueError(f"router backend must be one of {BACKENDS}, got {backend!r}")
  if backend == "xla":
    return route_reference(x, norm_scale, weight, bias, k=k, eps=eps, copies=copies)
  why = kernel_supports(x, weight, k, backend)
  if why:
    raise ValueError(f"router kernel: {why}")
  if n == 0:
    return x, jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.float32)
  if backend == "top_k":
    normed, product = _normed_and_product(x, norm_scale, weight, eps)
    experts, weights = _top_k_pallas(product, bias, k=k, interpret=interpret)
    return jnp.repeat(normed, copies, axis=0), experts, weights
  return _route_pallas(x, norm_scale, weight, bias, k=k, eps=eps, copies=copies,
                       interpret=interpret)


def _top_k_softmax(logits, k: int, num_experts: int):
  """[T, E'] float32 logits, the columns from ``num_experts`` on not experts -> the top k's
  expert ids [T, k] int32 and softmax weights [T, k] float32, ties to the lowest id (as
  lax.top_k): k rounds of (max, lowest index holding it)."""
  rows, padded_experts = logits.shape
  expert_ids = lax.broadcasted_iota(jnp.int32, logits.shape, 1)
  logits = jnp.where(expert_ids < num_experts, logits, -jnp.inf)
  slot = lax.broadcasted_iota(jnp.int32, (rows, k), 1)
  top = jnp.zeros((rows, k), jnp.float32)
  chosen = jnp.zeros((rows, k), jnp.int32)
  for j in range(k):
    best = jnp.max(logits, axis=1)  # [T]
    index = jnp.min(jnp.where(logits == best[:, None], expert_ids, padded_experts), axis=1)
    top = jnp.where(slot == j, best[:, None], top)
    chosen = jnp.where(slot == j, index[:, None], chosen)
    logits = jnp.where(expert_ids == index[:, None], -jnp.inf, logits)
  exp = jnp.exp(top - jnp.max(top, axis=1, keepdims=True))
  return chosen, exp / jnp.sum(exp, axis=1, keepdims=True)


def _block_rows(n: int):
  """This program's `BLOCK_T` token rows; rows past the last token re-read it, compute its
  results again and store them to its row, so no store needs a mask and no output is padded."""
  return jnp.minimum(pl.program_id(0) * BLOCK_T + lax.broadcasted_iota(jnp.int32, (BLOCK_T,), 0),
                     n - 1)


def _top_k_kernel(product_ref, bias_ref, experts_ref, weights_ref, *, k: int, num_experts: int):
  rows = _block_rows(product_ref.shape[0])
  logits = _add_bias(product_ref[rows, :].astype(jnp.float32), bias_ref)
  chosen, weights = _top_k_softmax(logits, k, num_experts)
  experts_ref[rows, :] = chosen
  weights_ref[rows, :] = weights


@functools.partial(jax.jit, static_argnames=("k", "interpret"))
def _top_k_pallas(product, bias, *, k: int, interpret: bool):
  """product [N, E] (``normed @ weight``), bias [E] -> (experts, weights) [N, k]."""
  n, num_experts = product.shape
  padded_experts = pl.next_power_of_2(num_experts)  # a load's width is a power of two
  if padded_experts != num_experts:
    product = jnp.pad(product, ((0, 0), (0, padded_experts - num_experts)))
    bias = jnp.pad(bias, (0, padded_experts - num_experts))
  return pl.pallas_call(
      functools.partial(_top_k_kernel, k=k, num_experts=num_experts),
      out_shape=(jax.ShapeDtypeStruct((n, k), jnp.int32), jax.ShapeDtypeStruct((n, k), jnp.float32)),
      grid=(pl.cdiv(n, BLOCK_T),),
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1),
      interpret=interpret,
      name="moe_router_top_k",
  )(product, bias)


def _kernel(x_ref, scale_ref, weight_ref, bias_ref, normed_ref, experts_ref, weights_ref, *,
            k: int, eps: float, copies: int, num_experts: int):
  n, d = x_ref.shape
  padded_experts = weight_ref.shape[1]
  rows = _block_rows(n)
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
  logits = _add_bias(logits, bias_ref)
  experts_ref[rows, :], weights_ref[rows, :] = _top_k_softmax(logits, k, num_experts)


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
      out_shape=(jax.ShapeDtypeStruct((n * copies, d), x.dtype),
                 jax.ShapeDtypeStruct((n, k), jnp.int32), jax.ShapeDtypeStruct((n, k), jnp.float32)),
      grid=(pl.cdiv(n, BLOCK_T),),
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=3),
      interpret=interpret,
      name="moe_router",
  )(x, norm_scale.astype(jnp.float32), weight.astype(jnp.bfloat16), bias)
