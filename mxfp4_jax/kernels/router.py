"""The MoE router's top k: the router's logits, the k largest and the softmax over them
(`BACKENDS`).

At decode sizes XLA runs the router as several small kernels a layer (its matrix-vector product
as a multiply and a reduction, the bias, a convert, top-k, the softmax, a slice), and a decode
step's few tokens make each cost its launch and dependency rather than its work:

- ``"xla"``: `route_reference`, the definition (also the CPU and float32 path).
- ``"top_k"``: XLA computes the router's product (spread over the whole GPU; for up to
  `PRODUCT_AS_SUM_TOKENS` tokens written as a float32 sum, one reduction kernel); one Pallas
  kernel adds the bias and takes the top k and the softmax, in place of four of XLA's kernels.
  (One kernel for the norm before the MoE and all of this, one program reading the whole
  router weight, ran slower than XLA: BENCHMARKS.md.)

`route_normalized` (a decode step's few tokens): the MoE's RMSNorm folded in. XLA's product
takes the un-normalized tokens (times the norm's weight) and the kernel computes each token's
RMS itself, scales the logits by it, and writes the normalized tokens, k copies each, for the
one-row tiles of the grouped matmul: the norm's sum of squares and the copies cost no kernels.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from mxfp4_jax.argcheck import is_int, is_power_of_two
from mxfp4_jax.kernels.triton_ops import (check_arrays, check_eps, check_float, check_runs_here,
                                          load_row_rms)

BLOCK_T = 16  # tokens a program routes
PRODUCT_AS_SUM_TOKENS = 8  # up to this many tokens, `_router_product` is a sum (one XLA kernel)
BACKENDS = ("xla", "top_k")


def route_reference(x, weight, bias, *, k: int):
  """x [N, D] (the normalized tokens), weight [E, D] (a torch Linear's, as the checkpoints
  store it), bias [E] -> (experts [N, k] int32, weights [N, k] float32): the logits
  ``x @ weight.T + bias`` in x's dtype (the product rounded, then the sum; a torch Linear with
  its bias rounds once, so a near-tie may fall the other way), their top k and the softmax over
  those."""
  logits = x @ weight.T.astype(x.dtype) + bias.astype(x.dtype)  # [N, E]
  top, experts = lax.top_k(logits.astype(jnp.float32), k)
  return experts.astype(jnp.int32), jax.nn.softmax(top, axis=-1)


def kernel_unsupported_reason(dtype, k: int, num_experts: int) -> str | None:
  """Why the top-k kernel cannot route tokens of ``dtype``; None if it can."""
  if jnp.dtype(dtype) != jnp.bfloat16:
    return f"x is {jnp.dtype(dtype)}, the kernel takes bfloat16"
  if not is_power_of_two(k) or k > num_experts:
    return f"k={k} is not a power of two no larger than the {num_experts} experts"
  return None


def _check_kernel_can_route(dtype, k: int, num_experts: int, interpret: bool) -> None:
  check_runs_here("the router's top-k kernel", interpret)
  why = kernel_unsupported_reason(dtype, k, num_experts)
  if why:
    raise ValueError(f"router kernel: {why}")


def _check_args(name: str, x, weight, bias, k) -> None:
  """The tokens ``x`` (called ``name``) [N, D], weight [E, D], bias [E] and 1 <= k <= E."""
  check_arrays("router: ", **{name: x}, weight=weight, bias=bias)
  if x.ndim != 2:
    raise ValueError(f"router: {name} must be [N, D], got {tuple(x.shape)}")
  d = x.shape[1]
  if weight.ndim != 2 or weight.shape[1] != d:
    raise ValueError(f"router: {name} [N, {d}] needs weight [E, {d}], got {tuple(weight.shape)}")
  experts = weight.shape[0]
  if bias.shape != (experts,):
    raise ValueError(f"router: bias must have shape [{experts}], got {tuple(bias.shape)}")
  if not (is_int(k) and 1 <= k <= experts):
    raise ValueError(f"router: k must be an int from 1 to the {experts} experts, got {k!r}")
  check_float("router: ", **{name: x}, weight=weight, bias=bias)


def route(x, weight, bias, *, k: int, backend: str = "xla", interpret: bool = False):
  """`route_reference`'s result, computed by ``backend`` (one of `BACKENDS`; the kernel runs in
  interpret mode on any platform with ``interpret``). Shapes are checked here, with one-line
  errors."""
  _check_args("x", x, weight, bias, k)
  if backend not in BACKENDS:
    raise ValueError(f"router backend must be one of {BACKENDS}, got {backend!r}")
  if backend == "xla":
    return route_reference(x, weight, bias, k=k)
  _check_kernel_can_route(x.dtype, k, weight.shape[0], interpret)
  if x.shape[0] == 0:
    return jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.float32)
  product = _router_product(x, weight)  # [N, E], the logits less the bias
  return _top_k_pallas(product, bias, k=k, interpret=interpret)


def _router_product(x, weight):
  """``x @ weight.T`` [N, E] in x's dtype. For a decode step's few tokens it is written as a
  float32 multiply and sum, which XLA runs as one reduction kernel; as a dot, XLA ran a
  materialized multiply and a sum (batch 1) or pads, a split-K GEMM and its sum (batch 8). The
  sum runs along the weight's rows ([E, D]): over D stored [D, E] it was a column reduction
  whose 32 columns kept one block of threads walking all of D."""
  if x.shape[0] > PRODUCT_AS_SUM_TOKENS:
    return x @ weight.T.astype(x.dtype)
  products = x.astype(jnp.float32)[:, None, :] * weight.astype(jnp.float32)[None]  # [N, E, D]
  return jnp.sum(products, axis=2).astype(x.dtype)


def _top_k_softmax(logits, *, k: int, num_experts: int):
  """logits [T, E'] float32 (bf16 values; columns past ``num_experts`` padding) -> the top k's
  expert ids [T, k] and their softmax [T, k]. k rounds of (max, lowest index holding it) over
  the experts not yet picked: ties go to the lowest id, as in lax.top_k, and a row with fewer
  than k logits above -inf still gets k experts. A NaN logit ranks above every number (as a
  positive NaN does in lax.top_k, which ranks a negative one last): it is picked, an expert
  that exists, and makes the token's weights NaN."""
  tokens, padded_experts = logits.shape
  # A picked expert's logit becomes -inf and its id one past every id, so that a round whose
  # best is -inf (fewer than k logits above it) takes the lowest id not yet picked. The padding
  # columns hold -inf and ids past the real ones: with k <= num_experts they are never picked.
  expert_ids = lax.broadcasted_iota(jnp.int32, logits.shape, 1)
  logits = jnp.where(expert_ids < num_experts, logits, -jnp.inf)
  slot = lax.broadcasted_iota(jnp.int32, (tokens, k), 1)
  top = jnp.zeros((tokens, k), jnp.float32)
  chosen = jnp.zeros((tokens, k), jnp.int32)
  for j in range(k):
    is_nan = logits != logits
    has_nan = jnp.max(is_nan.astype(jnp.int32), axis=1) > 0  # [T]
    best = jnp.where(has_nan, jnp.nan, jnp.max(logits, axis=1))
    holds_best = jnp.where(has_nan[:, None], is_nan, logits == best[:, None])
    index = jnp.min(jnp.where(holds_best, expert_ids, padded_experts), axis=1)  # [T]
    top = jnp.where(slot == j, best[:, None], top)
    chosen = jnp.where(slot == j, index[:, None], chosen)
    picked = expert_ids == index[:, None]
    logits = jnp.where(picked, -jnp.inf, logits)
    expert_ids = jnp.where(picked, padded_experts, expert_ids)
  exp = jnp.exp(top - jnp.max(top, axis=1, keepdims=True))
  return chosen, exp / jnp.sum(exp, axis=1, keepdims=True)


def _with_bias(product, bias_ref):
  """The logits rounded as the reference rounds them: the product in bf16, plus the bias in
  bf16 (a float32 bias rounded first)."""
  as_bf16 = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)
  return as_bf16(as_bf16(product) + as_bf16(bias_ref[...])[None, :])


def _top_k_kernel(product_ref, bias_ref, experts_ref, weights_ref, *, k: int, num_experts: int):
  n = product_ref.shape[0]
  # Rows past the last token re-read it, compute its results again and store them to its row,
  # so no store needs a mask and no output is padded.
  rows = jnp.minimum(pl.program_id(0) * BLOCK_T + lax.broadcasted_iota(jnp.int32, (BLOCK_T,), 0),
                     n - 1)
  experts_ref[rows, :], weights_ref[rows, :] = _top_k_softmax(
      _with_bias(product_ref[rows, :], bias_ref), k=k, num_experts=num_experts)


def _normalized_top_k_kernel(product_ref, bias_ref, h_ref, norm_ref, experts_ref, weights_ref,
                             rows_ref, *, k: int, num_experts: int, eps: float):
  token = pl.program_id(0)
  # The norm as the model's RMSNorm computes it: float32, x rsqrt(mean(x^2) + eps), then x w.
  h, in_row, inv_rms = load_row_rms(h_ref, token, eps)  # [1, W], [1, W], [1, 1]
  width = in_row.shape[1]
  product = product_ref[pl.ds(token, 1), :] * inv_rms  # [1, E']: (h w) @ weight.T, normalized
  experts_ref[pl.ds(token, 1), :], weights_ref[pl.ds(token, 1), :] = _top_k_softmax(
      _with_bias(product, bias_ref), k=k, num_experts=num_experts)
  norm = pltriton.load(norm_ref.at[pl.ds(0, width)], mask=in_row[0], other=0)
  normalized = ((h * inv_rms) * norm[None, :]).astype(rows_ref.dtype)
  for j in range(k):  # row t k + j: token t, as the one-row tiles read their x
    pltriton.store(rows_ref.at[pl.ds(token * k + j, 1), pl.ds(0, width)], normalized, mask=in_row)


def _padded_experts(product, bias):
  """Product and bias padded to a power-of-two count of experts: a load's width is one."""
  pad = pl.next_power_of_2(product.shape[1]) - product.shape[1]
  if pad:
    product = jnp.pad(product, ((0, 0), (0, pad)))
    bias = jnp.pad(bias, (0, pad))
  return product, bias


@functools.partial(jax.jit, static_argnames=("k", "interpret"))
def _top_k_pallas(product, bias, *, k: int, interpret: bool):
  """product [N, E] (``x @ weight.T``, the logits less the bias), bias [E] -> (experts,
  weights) [N, k]."""
  n, num_experts = product.shape
  product, bias = _padded_experts(product, bias)
  return pl.pallas_call(
      functools.partial(_top_k_kernel, k=k, num_experts=num_experts),
      out_shape=(jax.ShapeDtypeStruct((n, k), jnp.int32), jax.ShapeDtypeStruct((n, k), jnp.float32)),
      grid=(pl.cdiv(n, BLOCK_T),),
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1),
      interpret=interpret,
      name="moe_router_top_k",
  )(product, bias)


def route_normalized(h, norm_weight, eps: float, weight, bias, *, k: int,
                     interpret: bool = False):
  """The MoE's RMSNorm, then `route`, for a decode step's few tokens in one Pallas kernel after
  XLA's product; also the normalized tokens, each repeated k times.

  h [N, D] (the residual, bf16, N <= `PRODUCT_AS_SUM_TOKENS`), norm_weight [D] (the RMSNorm's
  scale) and eps, weight [E, D], bias [E] -> (experts [N, k] int32, weights [N, k] float32,
  rows [N k, D] in h's dtype, row t k + j being token t normalized). The logits equal
  `route_reference`'s on the normalized tokens up to rounding: the product is taken on h times
  the norm's weight and scaled by the inverse RMS after, in float32.
  """
  _check_args("h", h, weight, bias, k)
  check_arrays("route_normalized: ", norm_weight=norm_weight)
  n, d = h.shape
  if d == 0:  # its RMS would be 0 / 0
    raise ValueError("route_normalized: h must have at least one feature, got [N, 0]")
  if n > PRODUCT_AS_SUM_TOKENS:
    raise ValueError(f"route_normalized: at most {PRODUCT_AS_SUM_TOKENS} tokens, got {n}")
  if norm_weight.shape != (d,):
    raise ValueError(f"route_normalized: norm_weight must have shape [{d}], got "
                     f"{tuple(norm_weight.shape)}")
  eps = check_eps(eps, "route_normalized: eps")
  _check_kernel_can_route(h.dtype, k, weight.shape[0], interpret)
  if n == 0:
    return (jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.float32),
            jnp.zeros((0, d), h.dtype))
  scaled = h.astype(jnp.float32) * norm_weight.astype(jnp.float32)  # fused into the product
  product = _router_product(scaled, weight)  # [N, E] float32: a sum, as N <= 8
  return _normalized_top_k_pallas(product, bias, h, norm_weight.astype(jnp.float32), k=k,
                                  eps=eps, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("k", "eps", "interpret"))
def _normalized_top_k_pallas(product, bias, h, norm_weight, *, k: int, eps: float,
                             interpret: bool):
  n, num_experts = product.shape
  product, bias = _padded_experts(product, bias)
  return pl.pallas_call(
      functools.partial(_normalized_top_k_kernel, k=k, num_experts=num_experts, eps=eps),
      out_shape=(jax.ShapeDtypeStruct((n, k), jnp.int32), jax.ShapeDtypeStruct((n, k), jnp.float32),
                 jax.ShapeDtypeStruct((n * k, h.shape[1]), h.dtype)),
      grid=(n,),
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1),
      interpret=interpret,
      name="moe_norm_router_top_k",
  )(product, bias, h, norm_weight)
