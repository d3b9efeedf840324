"""Timing on the device without timing dispatch, and realistic MoE routing.

One jitted call costs tens of microseconds of host dispatch, more than a decode-sized kernel.
`time_per_call` therefore runs ``n`` calls inside ONE jitted function, rotating through copies of
the inputs (so that weights do not sit in L2), for two values of ``n``; the slope between them
is the device time of one call, with the fixed costs (dispatch, launch of the jit) cancelled.
One argument of each call (``perturb``: e.g. the group sizes) gets ``previous output * zero``
added, with ``zero`` a run-time argument that XLA cannot fold away, so it can neither merge
repeated identical calls nor reorder them, provided that argument feeds the work timed; each
output passes an optimization barrier whole, so XLA cannot shrink a call to the one element kept.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

# Bytes the rotated copies of a timed chain should add up to: twice the H100's 50 MB L2, so that
# a call reads what it reads from HBM rather than from what the previous calls left in L2.
PAST_L2_BYTES = 100e6


def _chain(fn: Callable, copies: Sequence, n: int, perturb: int):
  """A jitted function making n dependent calls of fn over the rotated copies."""

  def run(copies, zero):
    token, kept = jnp.zeros((), jnp.float32), []
    for i in range(n):
      args = list(copies[i % len(copies)])
      args[perturb] = args[perturb] + (token * zero).astype(args[perturb].dtype)
      out = jax.lax.optimization_barrier(fn(*args))  # whole output: no slice-of-dot rewrite
      token = jnp.ravel(out)[-1].astype(jnp.float32)
      kept.append(token)
    return jnp.stack(kept)

  zero = jnp.zeros((), jnp.float32)  # a run-time value, so XLA cannot fold token * zero away
  return functools.partial(jax.jit(run), zero=zero)


def time_per_call(fn: Callable, copies: Sequence[tuple], *, calls: tuple[int, int] = (8, 40),
                  repeats: int = 5, perturb: int | None = None, min_span_s: float = 1e-3,
                  max_calls: int = 512) -> float:
  """Median seconds of device time per ``fn(*copy)`` call.

  ``perturb``: index of the argument that carries the dependency on the previous call; it must
  feed the expensive part of ``fn`` (its update is one elementwise pass), so it is required when
  ``fn`` takes several arguments: one that feeds only an epilogue (a split-K kernel's row
  weights) would let XLA merge the calls that share a copy. The longer chain grows (up to
  ``max_calls``) until the two chains differ by ``min_span_s``: a 30 us kernel over 8 extra
  calls is within the noise of launching the chains; a slope still short of it is refused.
  """
  low_n, high_n = calls
  if not 1 <= low_n < high_n or repeats < 1:
    raise ValueError(f"time_per_call: calls={calls} must be two chain lengths 1 <= low < high, "
                     f"and repeats={repeats} at least 1")
  if perturb is None:
    if len(copies[0]) != 1:
      raise ValueError(f"time_per_call: fn takes {len(copies[0])} arguments; pass perturb=, the "
                       "index of the one that carries the dependency on the previous call")
    perturb = 0
  chain = functools.cache(lambda n: _chain(fn, copies, n, perturb))  # compiled once per length
  while True:
    slope, high_s = _median_slope(chain, copies, low_n, high_n, repeats)
    if slope * (high_n - low_n) >= min_span_s or high_n >= max_calls:
      break
    high_n = _longer_chain(slope, high_s, low_n, high_n, min_span_s, max_calls)
  if slope * (high_n - low_n) < min_span_s:
    raise RuntimeError(f"time_per_call: no slope resolved between {low_n} and {high_n} calls "
                       f"({slope * 1e6:.3g} us a call spans under {min_span_s * 1e3:g} ms); the "
                       "call is below the timing noise")
  return slope


def _longer_chain(slope: float, high_s: float, low_n: int, high_n: int, min_span_s: float,
                  max_calls: int) -> int:
  """Calls for the long chain that should span ``min_span_s``; when the slope was lost in noise,
  the long chain's whole time per call (an upper bound) stands in for it."""
  per_call = slope if slope > 0 else high_s / high_n
  wanted = low_n + math.ceil(1.5 * min_span_s / per_call)
  return min(max_calls, max(2 * high_n, wanted))


def _median_slope(chain: Callable, copies, low_n: int, high_n: int,
                  repeats: int) -> tuple[float, float]:
  """(median slope in seconds per call, median time of the long chain); ``chain(n)``: `_chain`."""
  low, high = chain(low_n), chain(high_n)
  for f in (low, high):  # compile and warm up
    jax.block_until_ready(f(copies))
  slopes, high_times = [], []
  for _ in range(repeats):
    times = []
    for f in (low, high):
      start = time.perf_counter()
      jax.block_until_ready(f(copies))
      times.append(time.perf_counter() - start)
    slopes.append((times[1] - times[0]) / (high_n - low_n))
    high_times.append(times[1])
  return statistics.median(slopes), statistics.median(high_times)


def relative_error(out: jax.Array, reference: jax.Array) -> float:
  """||out - reference|| / ||reference|| (Frobenius) in float32; 0 when both are zero."""
  out, reference = out.astype(jnp.float32), reference.astype(jnp.float32)
  return float(jnp.linalg.norm(out - reference) / jnp.maximum(jnp.linalg.norm(reference), 1e-30))


def random_routing(key: jax.Array, num_rows: int, num_experts: int, top_k: int = 4):
  """Group sizes [E] for ``num_rows`` token-expert rows: each token picks top_k distinct experts.

  Router logits are Gaussian, so experts are picked uniformly; the rows are those of
  ``ceil(num_rows / top_k)`` tokens, the last token cut short when top_k does not divide.
  """
  if not 1 <= top_k <= num_experts:
    raise ValueError(f"random_routing: top_k={top_k} must be in [1, num_experts={num_experts}]")
  tokens = -(-num_rows // top_k)
  logits = jax.random.normal(key, (tokens, num_experts))
  _, experts = jax.lax.top_k(logits, top_k)
  experts = experts.reshape(-1)[:num_rows]
  return jnp.bincount(experts, length=num_experts).astype(jnp.int32)


def expected_experts_hit(num_experts: int, top_k: int, tokens: int) -> float:
  """Distinct experts that get rows when each of ``tokens`` tokens picks top_k of them uniformly."""
  return num_experts * (1 - (1 - top_k / num_experts) ** tokens)


def decode_step_bytes(cfg, batch: int, context: int) -> dict[str, float]:
  """HBM bytes one decode step of ``batch`` tokens must read at least, by component.

  Experts: MXFP4 (4.25 bits per weight) of the experts the batch is expected to route to, per
  layer; attention and router weights, the unembedding and the KV cache in the model's dtype
  (bf16: 2 bytes); the cache: ``context`` keys and values per sequence (at most the window on
  sliding layers).
  """
  from mxfp4_jax.mxfp4.format import BITS_PER_WEIGHT  # noqa: PLC0415

  d, i, e, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.num_layers
  size = cfg.jnp_dtype.itemsize
  expert = (2 * i * d + d * i) * BITS_PER_WEIGHT / 8 + (2 * i + d) * 4  # weights + f32 biases
  attention = (d * (cfg.q_size + 2 * cfg.kv_size) + cfg.q_size * d) * size
  kv_per_token = 2 * cfg.kv_size * size  # keys and values
  kv = keys_over_layers(cfg, context) * kv_per_token * batch
  return dict(
      experts=layers * expected_experts_hit(e, cfg.experts_per_token, batch) * expert,
      attention=layers * attention, router=layers * d * e * size, kv_cache=kv,
      unembedding=cfg.vocab_size * d * size)


def keys_over_layers(cfg, context: int) -> int:
  """Keys a token at ``context`` attends to, summed over the layers (at most the window on
  sliding layers)."""
  return sum(min(context, cfg.sliding_window) if cfg.is_sliding(layer) else context
             for layer in range(cfg.num_layers))


def flops_per_token(cfg, context: int) -> float:
  """Matmul FLOPs of one token's forward: active weights and attention over ``context`` keys."""
  d, i = cfg.hidden_size, cfg.intermediate_size
  weights = (cfg.experts_per_token * 3 * i * d + d * (cfg.q_size + 2 * cfg.kv_size)
             + cfg.q_size * d + d * cfg.num_experts)
  return (2 * (cfg.num_layers * weights + cfg.vocab_size * d)
          + 4 * keys_over_layers(cfg, context) * cfg.q_size)


def prefill_bytes(cfg, length: int) -> float:
  """HBM bytes a prefill of ``length`` tokens must read at least: the weights its tokens route
  to, as a decode step of ``length`` rows reads them (`decode_step_bytes`), with no cache. With
  many experts and a short prompt this, not the FLOPs, bounds it (120b, 1k tokens: every one
  of the 36 x 128 experts, 61 GB)."""
  return sum(decode_step_bytes(cfg, length, 0).values())


def prefill_flops(cfg, length: int) -> float:
  """Matmul FLOPs of a causal prefill of ``length`` tokens (each over half the prompt's keys on
  average) that computes logits at its last position only, as generation's prefill does."""
  unembedding = 2 * cfg.vocab_size * cfg.hidden_size
  return length * (flops_per_token(cfg, length // 2) - unembedding) + unembedding
