"""GPT-OSS in Flax NNX: attention with sinks and alternating sliding windows, top-k MoE whose
experts stay MXFP4 and run through the grouped matmul.

Shapes: B batch, T tokens, D hidden, H query heads, K key/value heads, G = H / K query heads per
KV head, hd head dim, E experts, k experts per token, N = B * T tokens, P = N * k routed rows.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mxfp4_jax.argcheck import check_int32_range, is_concrete, is_int
from mxfp4_jax.kernels import grouped_matmul
from mxfp4_jax.kernels.flash_attention import (decode_attention_update, flash_attention,
                                               visible_keys)
from mxfp4_jax.kernels.router import PRODUCT_AS_SUM_TOKENS, route, route_normalized
from mxfp4_jax.kernels.schedule import sort_by_expert
from mxfp4_jax.mxfp4.layout import random_packed
from mxfp4_jax.model.config import GptOssConfig
from mxfp4_jax.model.rope import apply_rope, rope_tables


class MXFP4Experts(nnx.Variable):
  """Expert weights of one MoE projection, packed in the kernel layout (`PackedMXFP4`)."""


def _exact_in_float32(method):
  """A float32 model's matmuls run in float32: XLA on GPU otherwise rounds float32 operands to
  TF32 (about 3e-4 relative error), which would defeat the float32 mode's exact comparisons."""
  @functools.wraps(method)
  def wrapper(self, *args, **kwargs):
    if self.cfg.dtype != "float32":  # leave any precision the caller set alone
      return method(self, *args, **kwargs)
    with jax.default_matmul_precision("highest"):
      return method(self, *args, **kwargs)
  return wrapper


def _normal(rngs: nnx.Rngs, shape, dtype):
  return (jax.random.normal(rngs.params(), shape, jnp.float32) * 0.02).astype(dtype)


class RMSNorm(nnx.Module):

  def __init__(self, dim: int, eps: float):
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))  # kept float32, as in the checkpoints
    self.eps = eps

  def __call__(self, x):  # [..., D]
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return (xf * self.scale[...]).astype(x.dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayerCache:
  """Keys and values of one layer for decoding: S slots, on sliding layers a ring of
  ``cache_slots(min(sliding_window, max_len))`` (the window in whole key blocks: 128 for
  GPT-OSS). ``positions`` is each slot's token position, -1 while empty or padding."""

  k: jax.Array  # [B, S, K, hd]
  v: jax.Array  # [B, S, K, hd]
  positions: jax.Array  # [B, S] int32

  @classmethod
  def empty(cls, batch: int, slots: int, cfg: GptOssConfig) -> LayerCache:
    shape = (batch, slots, cfg.num_kv_heads, cfg.head_dim)
    return cls(jnp.zeros(shape, cfg.jnp_dtype), jnp.zeros(shape, cfg.jnp_dtype),
               jnp.full((batch, slots), -1, jnp.int32))

  def write(self, k, v, positions, start) -> LayerCache:
    """Stores T new keys/values whose global step indices are ``start .. start + T - 1`` in slot
    ``index % S``; when T > S only the last S are kept (the ring holds the newest)."""
    slots, t = self.k.shape[1], k.shape[1]
    if t == 1:  # a decode step: one slot, updated in place
      put = lambda a, new: jax.lax.dynamic_update_slice_in_dim(a, new, start % slots, axis=1)
      return LayerCache(put(self.k, k), put(self.v, v), put(self.positions, positions))
    if t > slots:
      k, v, positions = k[:, -slots:], v[:, -slots:], positions[:, -slots:]
      start, t = start + t - slots, slots
    index = (start + jnp.arange(t)) % slots
    return LayerCache(self.k.at[:, index].set(k), self.v.at[:, index].set(v),
                      self.positions.at[:, index].set(positions))


def cache_slots(keys: int) -> int:
  """Slots for ``keys`` keys in whole key blocks of `decode_attention`: 16 up to 64 keys, 64
  beyond."""
  block = decode_block(keys)
  return -(-keys // block) * block


def decode_block(keys: int) -> int:
  """`decode_attention`'s key block for a cache of ``keys`` slots."""
  return 64 if keys > 64 else 16


# float32 scores [B, K, G, T, S] per attention step (1 GiB): long or batched prompts are cut into
# query chunks to stay under it (an 8k prompt: 512 queries a step; 8 prompts of 1k: 512).
SCORE_ELEMENTS = 1 << 28


def attend(q, k, v, q_pos, k_pos, sinks, window: int | None, query_chunk: int | None = None,
           aligned: bool = False):
  """Grouped-query attention with sinks over keys given by position (-1: no key).

  q [B, T, K, G, hd]; k, v [B, S, K, hd]; q_pos [B, T]; k_pos [B, S]; sinks [K, G].
  A key is visible when it exists, is not after the query, and on sliding layers is fewer than
  ``window`` positions before it. Long query blocks run ``query_chunk`` queries at a time
  (default: as many as `SCORE_ELEMENTS` allows, at least 16). ``aligned``: key i is query i's
  own token (a prefill), so a chunk on a sliding layer reads only its window's keys.
  """
  b, t, kv_heads, group, _ = q.shape
  if query_chunk is None:
    query_chunk = max(16, SCORE_ELEMENTS // (b * kv_heads * group * k.shape[1]))
  if t <= query_chunk:
    return _attend(q, k, v, q_pos, k_pos, sinks, window)
  pad = -t % query_chunk  # padded queries have position -1: they see only the sink
  num_chunks = (t + pad) // query_chunk
  q = jnp.pad(q, ((0, 0), (0, pad)) + ((0, 0),) * 3)
  q_pos = jnp.pad(q_pos, ((0, 0), (0, pad)), constant_values=-1)
  chunks = lambda a: jnp.moveaxis(a.reshape(a.shape[0], -1, query_chunk, *a.shape[2:]), 1, 0)

  if window is not None and aligned:
    # Queries [c C, c C + C) see keys [c C - window + 1, c C + C): slice them out of keys padded
    # with window - 1 empty slots in front (and the query padding behind).
    span = query_chunk + window - 1
    padded = lambda a, value=0: jnp.pad(a, ((0, 0), (window - 1, pad)) + ((0, 0),) * (a.ndim - 2),
                                        constant_values=value)
    k, v, k_pos = padded(k), padded(v), padded(k_pos, -1)

    def chunk_attention(c):
      q_c, q_pos_c, index = c
      keys = lambda a: jax.lax.dynamic_slice_in_dim(a, index * query_chunk, span, axis=1)
      return _attend(q_c, keys(k), keys(v), q_pos_c, keys(k_pos), sinks, window)
  else:
    chunk_attention = lambda c: _attend(c[0], k, v, c[1], k_pos, sinks, window)
  out = jax.lax.map(chunk_attention, (chunks(q), chunks(q_pos), jnp.arange(num_chunks)))
  return jnp.moveaxis(out, 0, 1).reshape(q.shape)[:, :t]  # from [T / chunk, B, chunk, K, G, hd]


def _attend(q, k, v, q_pos, k_pos, sinks, window):
  scores = jnp.einsum("bqkgd,bskd->bkgqs", q, k, preferred_element_type=jnp.float32)
  scores = scores * q.shape[-1] ** -0.5  # [B, K, G, T, S]
  visible = visible_keys(q_pos[:, :, None], k_pos[:, None, :], window)  # [B, T, S]
  scores = jnp.where(visible[:, None, None], scores, -jnp.inf)
  # The sink is one more logit per head in the softmax that takes probability mass and is then
  # dropped; it also keeps a query with no visible key (padding) finite. Written out rather than
  # concatenated onto the scores, which would copy them.
  sink = sinks[None, :, :, None, None].astype(jnp.float32)  # [1, K, G, 1, 1]
  top = jnp.maximum(jnp.max(scores, axis=-1, keepdims=True), sink)
  weights = jnp.exp(scores - top)
  probs = weights / (jnp.sum(weights, axis=-1, keepdims=True) + jnp.exp(sink - top))
  return jnp.einsum("bkgqs,bskd->bqkgd", probs.astype(v.dtype), v)  # [B, T, K, G, hd]


class Attention(nnx.Module):

  def __init__(self, cfg: GptOssConfig, layer: int, rngs: nnx.Rngs):
    dt, d = cfg.jnp_dtype, cfg.hidden_size
    qkv = cfg.q_size + 2 * cfg.kv_size
    self.qkv_weight = nnx.Param(_normal(rngs, (d, qkv), dt))  # columns: q | k | v
    self.qkv_bias = nnx.Param(jnp.zeros((qkv,), dt))
    self.out_weight = nnx.Param(_normal(rngs, (cfg.q_size, d), dt))
    self.out_bias = nnx.Param(jnp.zeros((d,), dt))
    self.sinks = nnx.Param(jnp.zeros((cfg.num_heads,), jnp.float32))  # one logit per head
    self.cfg, self.sliding = cfg, cfg.is_sliding(layer)

  @_exact_in_float32
  def __call__(self, x, cos, sin, positions, cache: LayerCache | None = None, start=0,
               norm: RMSNorm | None = None):
    """x [B, T, D]: the attention's input, or with ``norm`` the residual that ``norm``
    normalizes first; positions [B, T] (-1: padding); -> (out, cache). With a cache, the T new
    keys are stored at global step ``start``, and attention runs over
    - a prefill (``start`` the int 0): the new keys alone (the cache is empty);
    - a decode step (T = 1, ``start`` not the int 0): the cache, the new key stored first;
    - a continuation (T > 1 after a prefill): the cached keys and the new ones."""
    cfg = self.cfg
    b, t, _ = x.shape
    sinks = self.sinks[...].reshape(cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads)
    window = cfg.sliding_window if self.sliding else None
    prefill = isinstance(start, int) and start == 0  # known when tracing: an empty cache
    decoding = cache is not None and t == 1 and not prefill
    if decoding and cfg.resolved_attention_backend == "pallas":
      # A decode step in one kernel: the norm's 1/RMS and the bias, RoPE on q and the new key,
      # the key, value and position stored in the slot the step takes, attention over the
      # cache. The projection takes the residual times the norm's weight.
      rows, norm_args = x, {}
      if norm is not None:
        rows = (x.astype(jnp.float32) * norm.scale[...]).astype(x.dtype)
        norm_args = dict(norm_rows=x[:, 0], norm_eps=norm.eps)
      projected = rows @ self.qkv_weight[...]  # [B, 1, (H + 2K) hd]
      heads = projected.reshape(b, cfg.num_heads + 2 * cfg.num_kv_heads, cfg.head_dim)
      out, *updated = decode_attention_update(
          heads, cos[:, 0], sin[:, 0], cache.k, cache.v, positions[:, 0], cache.positions,
          start, sinks, self.qkv_bias[...], window=window,
          block_k=decode_block(cache.k.shape[1]), interpret=cfg.attention_interpret,
          **norm_args)
      cache = LayerCache(*updated)
    else:
      qkv = (x if norm is None else norm(x)) @ self.qkv_weight[...] + self.qkv_bias[...]
      out, cache = self._rope_cache_attend(qkv, cos, sin, positions, cache, start, prefill,
                                           decoding, sinks, window)
    out = out.reshape(b, t, cfg.q_size) @ self.out_weight[...] + self.out_bias[...]
    return out, cache

  def _rope_cache_attend(self, qkv, cos, sin, positions, cache, start, prefill, decoding, sinks,
                         window):
    """RoPE, the cache's update and attention as separate steps: prefills, and decoding off
    the kernel. qkv [B, T, (H + 2K) hd] -> (out [B, T, K, G, hd], cache)."""
    cfg = self.cfg
    b, t, _ = qkv.shape
    groups = cfg.num_heads // cfg.num_kv_heads
    q, k, v = jnp.split(qkv, [cfg.q_size, cfg.q_size + cfg.kv_size], axis=-1)
    q = apply_rope(q.reshape(b, t, cfg.num_heads, cfg.head_dim), cos, sin)
    k = apply_rope(k.reshape(b, t, cfg.num_kv_heads, cfg.head_dim), cos, sin)
    v = v.reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
    q = q.reshape(b, t, cfg.num_kv_heads, groups, cfg.head_dim)  # head h uses KV head h // G
    keys, values, key_pos = k, v, positions
    own_keys = not decoding and (cache is None or prefill)  # attends only the keys it brings
    if decoding:
      # A decode step stores its key first and attends over the cache alone (no copy of it): the
      # ring slot it takes held a key `window` or more positions back, which it must not see.
      cache = cache.write(k, v, positions, start)
      keys, values, key_pos = cache.k, cache.v, cache.positions
    elif cache is not None:
      # Attend over the cache as it was plus the new keys, then store them: a prompt longer than
      # a sliding layer's ring still sees, at every position, the keys of its own window. A
      # prefill starts from an empty cache: nothing to attend there.
      if not prefill:
        keys = jnp.concatenate([cache.k, k], axis=1)
        values = jnp.concatenate([cache.v, v], axis=1)
        key_pos = jnp.concatenate([cache.positions, positions], axis=1)
      cache = cache.write(k, v, positions, start)
    if cfg.resolved_attention_backend == "pallas" and own_keys:
      out = flash_attention(q, k, v, positions, sinks, window=window,
                            interpret=cfg.attention_interpret)
    else:
      out = attend(q, keys, values, positions, key_pos, sinks, window, aligned=own_keys)
    return out, cache


class MoE(nnx.Module):

  def __init__(self, cfg: GptOssConfig, rngs: nnx.Rngs):
    dt, d, i, e = cfg.jnp_dtype, cfg.hidden_size, cfg.intermediate_size, cfg.num_experts
    self.router_weight = nnx.Param(_normal(rngs, (e, d), dt))  # [E, D], as the checkpoints
    self.router_bias = nnx.Param(jnp.zeros((e,), dt))
    self.gate_up = MXFP4Experts(random_packed(rngs.params(), e, d, 2 * i, swiglu_halves=True))
    self.down = MXFP4Experts(random_packed(rngs.params(), e, i, d))
    self.cfg = cfg

  @jax.named_scope("mxfp4_moe")  # the experts' grouped matmuls, findable in profiler traces
  @_exact_in_float32
  def __call__(self, x, norm: RMSNorm | None = None):
    """x [B, T, D]: the MoE's input, or with ``norm`` the residual that ``norm`` normalizes
    first (a decode step's tokens then take the norm inside the router's kernel)."""
    cfg = self.cfg
    cfg.check_moe_kernels_run_here()
    b, t, d = x.shape
    k = cfg.experts_per_token
    kernel_args = dict(backend=cfg.resolved_moe_backend, interpret=cfg.moe_interpret)
    swiglu_args = dict(activation="swiglu", swiglu_alpha=cfg.swiglu_alpha,
                       swiglu_limit=cfg.swiglu_limit)
    # A decode step's few rows, about one per expert: each row is its own tile, so no sort,
    # no group sizes and no scatter, only a sum over each token's k rows.
    one_row_tiles = cfg.moe_one_row_tiles(b * t)
    if (norm is not None and one_row_tiles and cfg.resolved_router_backend == "top_k"
        and b * t <= PRODUCT_AS_SUM_TOKENS):
      # [N, k] experts and weights, and [N k, D] rows: token t normalized at rows t k .. t k + k.
      # One-row tiles only, so the sorted path below (which gathers from `tokens`) is not taken.
      experts, weights, rows = route_normalized(
          x.reshape(-1, d), norm.scale[...], norm.eps, self.router_weight[...],
          self.router_bias[...], k=k, interpret=cfg.moe_interpret)
    else:
      tokens = (x if norm is None else norm(x)).reshape(-1, d)  # [N, D]
      # Top k of the router's logits, softmax over the chosen (a Pallas kernel per
      # cfg.router_backend): [N, k] expert ids and weights.
      experts, weights = route(tokens, self.router_weight[...], self.router_bias[...], k=k,
                               backend=cfg.resolved_router_backend, interpret=cfg.moe_interpret)
      rows = jnp.repeat(tokens, k, axis=0) if one_row_tiles else None  # [P, D]

    flat_experts = experts.reshape(-1)  # [P], token-major: row p is token p // k
    if one_row_tiles:
      h = grouped_matmul(rows, self.gate_up.get_value(), None, row_experts=flat_experts,
                         **swiglu_args, **kernel_args)  # [P, I]
      y = grouped_matmul(h, self.down.get_value(), None, weights.reshape(-1),
                         row_experts=flat_experts, out_dtype=jnp.float32, **kernel_args)
      out = y.reshape(-1, k, d).sum(axis=1)  # [N, D]
      return out.astype(x.dtype).reshape(b, t, d)

    # Rows sorted by expert: the grouped matmul's ragged layout.
    order, position, group_sizes = sort_by_expert(flat_experts, cfg.num_experts)
    token_of_row = order // k
    h = grouped_matmul(tokens[token_of_row], self.gate_up.get_value(), group_sizes,
                       **swiglu_args, **kernel_args)  # [P, I]
    y = grouped_matmul(h, self.down.get_value(), group_sizes, weights.reshape(-1)[order],
                       out_dtype=jnp.float32, **kernel_args)  # [P, D], router weight applied
    # Back to token-major order by a gather (XLA fuses it into the sum over each token's k rows)
    # rather than a scatter-add of y onto the tokens.
    out = y[position].reshape(-1, k, d).sum(axis=1)  # [N, D]
    return out.astype(x.dtype).reshape(b, t, d)


class Block(nnx.Module):

  def __init__(self, cfg: GptOssConfig, layer: int, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
    self.attn = Attention(cfg, layer, rngs)
    self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
    self.mlp = MoE(cfg, rngs)

  def __call__(self, x, cos, sin, positions, cache=None, start=0):  # x [B, T, D]: the residual
    attn, cache = self.attn(x, cos, sin, positions, cache, start, norm=self.attn_norm)
    # The residual behind a barrier: XLA otherwise recomputes it (the previous MoE's sum) inside
    # this add's kernel, and the sum, then read twice, stays a kernel of its own. With it, a
    # decode step runs one kernel a layer fewer (`experiments.step_kernels`; BENCHMARKS.md,
    # twenty-fifth round).
    x = jax.lax.optimization_barrier(x) + attn
    return x + self.mlp(x, self.mlp_norm), cache


def _concrete_start(start):
  """``forward``'s start: a traced value as it is, a concrete one (a NumPy or JAX scalar too) as a
  Python int >= 0, so that the checks and the prefill test see it."""
  if not is_concrete(start):
    return start
  value = np.asarray(start)
  if (isinstance(start, bool) or value.ndim or not np.issubdtype(value.dtype, np.integer)
      or value < 0):
    raise ValueError(f"start must be an integer step >= 0, got {start!r}")
  return int(value)


def _as_ids(name: str, a) -> jax.Array:
  """Token ids or positions: an int array [batch, seq], as int32. Host values are checked
  against int32 before JAX converts them, which (64-bit types being off) would wrap an int64 id
  of 2**32 + 5 into the vocabulary as 5. Other integer types become int32: in an unsigned one
  the -1 of padding cannot be written, and a query's position minus a later key's wraps to a
  large positive distance, which the causal mask would let through."""
  if not isinstance(a, jax.Array) or is_concrete(a):
    host = np.asarray(a)
    check_int32_range(**{name: host})
    a = a if isinstance(a, jax.Array) else host
  if a.ndim != 2 or not jnp.issubdtype(a.dtype, jnp.integer):
    raise ValueError(f"{name} must be an int array [batch, seq], got {a.dtype}{list(a.shape)}")
  return jnp.asarray(a).astype(jnp.int32)


class GptOss(nnx.Module):
  """``model(tokens [B, T] int32) -> logits [B, T, vocab] float32`` (full causal forward).

  `forward` is the general form used for decoding: explicit positions (-1 marks padding) and
  per-layer KV caches (`init_cache`).
  """

  def __init__(self, cfg: GptOssConfig, *, rngs: nnx.Rngs):
    if not isinstance(cfg, GptOssConfig):
      raise TypeError(f"GptOss takes a GptOssConfig (GptOssConfig.from_dict for a dict), got "
                      f"{type(cfg).__name__}")
    dt = cfg.jnp_dtype
    self.embedding = nnx.Param(_normal(rngs, (cfg.vocab_size, cfg.hidden_size), dt))
    self.layers = nnx.List([Block(cfg, layer, rngs) for layer in range(cfg.num_layers)])
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
    # [D, V], not the checkpoints' [V, D]: XLA's batch-1 product streams it at 3.1 TB/s on the
    # H100 that way, 2.8 TB/s the other way round (BENCHMARKS.md, twenty-fourth round).
    self.unembedding = nnx.Param(_normal(rngs, (cfg.hidden_size, cfg.vocab_size), dt))
    self.cfg = cfg

  def __call__(self, tokens):  # [B, T] int32
    tokens = _as_ids("tokens", tokens)
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    return self.forward(tokens, positions)[0]

  def init_cache(self, batch: int, max_len: int) -> list[LayerCache]:
    """Empty caches: ``max_len`` slots on full-attention layers, the window on sliding ones,
    rounded up to whole key blocks of the decode kernel (spare slots stay empty; a ring longer
    than the window still shows only the window's keys)."""
    for name, value in (("batch", batch), ("max_len", max_len)):
      if not is_int(value) or value < 1:
        raise ValueError(f"init_cache: {name} must be an int >= 1, got {value!r}")
    return [LayerCache.empty(batch, cache_slots(min(self.cfg.sliding_window, max_len)
                                                if self.cfg.is_sliding(i) else max_len), self.cfg)
            for i in range(self.cfg.num_layers)]

  @_exact_in_float32
  def forward(self, tokens, positions, caches=None, start=0, last_only: bool = False):
    """tokens, positions [B, T] -> (logits [B, T, V] float32, caches or None).

    ``positions``: -1 marks padding (left only); after it, a row's positions rise by one per
    token, as `Generator` writes them. The Pallas attention picks the key blocks a query sees by
    index on that promise, which values under jit cannot be checked against: other positions
    give other outputs than ``attention_backend="xla"``.
    ``start``: the global step of ``tokens[:, 0]`` in the caches; a concrete 0 (not traced)
    means a prefill into empty caches. ``last_only``: logits of the last position only ([B, 1,
    V]); a prefill needs no more, and an 8k prompt's full logits would be 6.6 GB.
    """
    tokens, positions = _as_ids("tokens", tokens), _as_ids("positions", positions)
    start = _concrete_start(start)
    self._check_forward_args(tokens, positions, caches, start)
    x = self.embedding[...][tokens]  # [B, T, D]
    cos, sin = rope_tables(self.cfg, jnp.maximum(positions, 0))  # [B, T, hd / 2]
    new_caches = []
    for i, block in enumerate(self.layers):
      x, cache = block(x, cos, sin, positions, None if caches is None else caches[i], start)
      new_caches.append(cache)
    if last_only:
      x = x[:, -1:]
    x = self.norm(x)
    logits = jnp.einsum("btd,dv->btv", x, self.unembedding[...],
                        preferred_element_type=jnp.float32)
    return logits, (None if caches is None else new_caches)

  def _check_forward_args(self, tokens, positions, caches, start):
    """One-line errors for what would otherwise fail deep inside JAX or, worse, run: token ids
    outside the vocabulary (a gather clamps them) and a full-attention cache too short for its
    keys (its ring would drop the oldest). Values are checked where they are concrete."""
    if positions.shape != tokens.shape:
      raise ValueError(f"positions {list(positions.shape)} must match tokens "
                       f"{list(tokens.shape)}")
    if 0 in tokens.shape:
      raise ValueError(f"tokens {list(tokens.shape)} must hold at least one row and one token")
    if is_concrete(tokens):
      low, high = int(tokens.min(initial=0)), int(tokens.max(initial=0))
      if low < 0 or high >= self.cfg.vocab_size:
        raise ValueError(f"tokens hold ids in [{low}, {high}], outside the vocabulary "
                         f"[0, {self.cfg.vocab_size})")
    if caches is None:
      return
    if len(caches) != self.cfg.num_layers:
      raise ValueError(f"caches has {len(caches)} layers, the model {self.cfg.num_layers}")
    batch, t = tokens.shape
    # On full-attention layers every key needs a slot (init_cache's max_len).
    keys = t + (start if isinstance(start, int) else 0)
    for i, cache in enumerate(caches):
      heads = (self.cfg.num_kv_heads, self.cfg.head_dim)
      if not isinstance(cache, LayerCache) or tuple(cache.k.shape[2:]) != heads:
        raise ValueError(f"caches[{i}] must be a LayerCache of [batch, slots, {heads[0]}, "
                         f"{heads[1]}] keys (init_cache), got {cache!r:.80}")
      if cache.k.shape[0] != batch:
        raise ValueError(f"caches[{i}] holds a batch of {cache.k.shape[0]}, tokens {batch}")
      if cache.k.dtype != self.cfg.jnp_dtype or cache.v.dtype != cache.k.dtype:
        raise ValueError(f"caches[{i}] holds {cache.k.dtype} keys and {cache.v.dtype} values, the "
                         f"model computes in {self.cfg.dtype} (init_cache)")
      # A sliding layer's ring must hold every key of its window (or all keys, if fewer).
      sliding = self.cfg.is_sliding(i)
      needed = min(self.cfg.sliding_window, keys) if sliding else keys
      if needed > cache.k.shape[1]:
        why = ("a sliding layer's window; " if sliding else "") + "init_cache's max_len"
        raise ValueError(f"{needed} keys do not fit caches[{i}]'s {cache.k.shape[1]} slots ({why})")
