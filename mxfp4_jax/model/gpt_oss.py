"""GPT-OSS in Flax NNX: attention with sinks and alternating sliding windows, top-k MoE whose
experts stay MXFP4 and run through the grouped matmul.

Shapes: B batch, T tokens, D hidden, H query heads, K key/value heads, G = H / K query heads per
KV head, hd head dim, E experts, k experts per token, N = B * T tokens, P = N * k routed rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mxfp4_jax.kernels import grouped_matmul
from mxfp4_jax.mxfp4.layout import PackedMXFP4, random_packed
from mxfp4_jax.model.config import GptOssConfig
from mxfp4_jax.model.rope import apply_rope, rope_tables


class MXFP4Experts(nnx.Variable):
  """Expert weights of one MoE projection, packed in the kernel layout (`PackedMXFP4`)."""


def _normal(rngs: nnx.Rngs, shape, dtype, std: float = 0.02):
  return (jax.random.normal(rngs.params(), shape, jnp.float32) * std).astype(dtype)


class RMSNorm(nnx.Module):

  def __init__(self, dim: int, eps: float):
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))  # kept float32, as in the checkpoints
    self.eps = eps

  def __call__(self, x):  # [..., D]
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return (xf * self.scale[...]).astype(x.dtype)


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

  def __call__(self, x, cos, sin):  # x [B, T, D]
    cfg = self.cfg
    b, t, _ = x.shape
    qkv = x @ self.qkv_weight[...] + self.qkv_bias[...]  # [B, T, (H + 2K) hd]
    q, k, v = jnp.split(qkv, [cfg.q_size, cfg.q_size + cfg.kv_size], axis=-1)
    q = apply_rope(q.reshape(b, t, cfg.num_heads, cfg.head_dim), cos, sin)
    k = apply_rope(k.reshape(b, t, cfg.num_kv_heads, cfg.head_dim), cos, sin)
    v = v.reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
    groups = cfg.num_heads // cfg.num_kv_heads
    q = q.reshape(b, t, cfg.num_kv_heads, groups, cfg.head_dim)  # head h uses KV head h // G

    scores = jnp.einsum("bqkgd,bskd->bkgqs", q, k, preferred_element_type=jnp.float32)
    scores = scores * cfg.head_dim ** -0.5  # [B, K, G, T, T]
    query, key = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
    visible = key <= query
    if self.sliding:
      visible &= query - key < cfg.sliding_window
    scores = jnp.where(visible, scores, -jnp.inf)
    # The sink is one more logit per head that takes probability mass and is then dropped.
    sinks = self.sinks[...].reshape(cfg.num_kv_heads, groups)[None, :, :, None, None]
    logits = jnp.concatenate([scores, jnp.broadcast_to(sinks, (*scores.shape[:-1], 1))], axis=-1)
    probs = jax.nn.softmax(logits, axis=-1)[..., :-1]
    out = jnp.einsum("bkgqs,bskd->bqkgd", probs.astype(v.dtype), v)  # [B, T, K, G, hd]
    return out.reshape(b, t, cfg.q_size) @ self.out_weight[...] + self.out_bias[...]


class MoE(nnx.Module):

  def __init__(self, cfg: GptOssConfig, rngs: nnx.Rngs):
    dt, d, i, e = cfg.jnp_dtype, cfg.hidden_size, cfg.intermediate_size, cfg.num_experts
    self.router_weight = nnx.Param(_normal(rngs, (d, e), dt))
    self.router_bias = nnx.Param(jnp.zeros((e,), dt))
    self.gate_up = MXFP4Experts(random_packed(rngs.params(), e, d, 2 * i, swiglu_halves=True))
    self.down = MXFP4Experts(random_packed(rngs.params(), e, i, d))
    self.cfg = cfg

  def __call__(self, x):  # [B, T, D]
    cfg = self.cfg
    b, t, d = x.shape
    tokens = x.reshape(-1, d)  # [N, D]
    router_logits = tokens @ self.router_weight[...] + self.router_bias[...]  # [N, E]
    top_logits, experts = jax.lax.top_k(router_logits.astype(jnp.float32), cfg.experts_per_token)
    weights = jax.nn.softmax(top_logits, axis=-1)  # [N, k], over the chosen experts only

    # Rows sorted by expert: the grouped matmul's ragged layout.
    flat_experts = experts.reshape(-1)  # [P]
    order = jnp.argsort(flat_experts, stable=True)
    token_of_row = order // cfg.experts_per_token
    group_sizes = jnp.bincount(flat_experts, length=cfg.num_experts).astype(jnp.int32)
    kernel_args = dict(backend=cfg.moe_backend, interpret=cfg.moe_interpret)
    h = grouped_matmul(tokens[token_of_row], self.gate_up.get_value(), group_sizes,
                       activation="swiglu", swiglu_alpha=cfg.swiglu_alpha,
                       swiglu_limit=cfg.swiglu_limit, **kernel_args)  # [P, I]
    y = grouped_matmul(h, self.down.get_value(), group_sizes, weights.reshape(-1)[order],
                       out_dtype=jnp.float32, **kernel_args)  # [P, D], router weight applied
    out = jnp.zeros((tokens.shape[0], d), jnp.float32).at[token_of_row].add(y)
    return out.astype(x.dtype).reshape(b, t, d)


class Block(nnx.Module):

  def __init__(self, cfg: GptOssConfig, layer: int, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
    self.attn = Attention(cfg, layer, rngs)
    self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
    self.mlp = MoE(cfg, rngs)

  def __call__(self, x, cos, sin):  # [B, T, D], the residual stream
    x = x + self.attn(self.attn_norm(x), cos, sin)
    return x + self.mlp(self.mlp_norm(x))


class GptOss(nnx.Module):
  """``model(tokens [B, T] int32) -> logits [B, T, vocab] float32`` (full causal forward)."""

  def __init__(self, cfg: GptOssConfig, *, rngs: nnx.Rngs):
    dt = cfg.jnp_dtype
    self.embedding = nnx.Param(_normal(rngs, (cfg.vocab_size, cfg.hidden_size), dt))
    self.layers = nnx.List([Block(cfg, layer, rngs) for layer in range(cfg.num_layers)])
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
    self.unembedding = nnx.Param(_normal(rngs, (cfg.vocab_size, cfg.hidden_size), dt))
    self.cfg = cfg

  def __call__(self, tokens):  # [B, T] int32
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f"tokens must be an int array [batch, seq], got {tokens.dtype}{list(tokens.shape)}")
    x = self.embedding[...][tokens]  # [B, T, D]
    cos, sin = rope_tables(self.cfg, jnp.arange(tokens.shape[1])[None])  # [1, T, hd / 2]
    for block in self.layers:
      x = block(x, cos, sin)
    x = self.norm(x)
    return jnp.einsum("btd,vd->btv", x, self.unembedding[...],
                      preferred_element_type=jnp.float32)
