"""The NNX model against a float64 numpy GPT-OSS written from the architecture notes, piece by
piece (YaRN, attention with sinks and sliding window, MoE) and whole. The oracle reads the
experts' weights back through `mxfp4.unpack` and `mxfp4.dequantize`, which test_layout and
test_format check on their own; everything else it computes independently."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from mxfp4_jax import mxfp4
from mxfp4_jax.model import GptOss, GptOssConfig
from mxfp4_jax.model.gpt_oss import LayerCache
from mxfp4_jax.model.rope import rope_tables
from numerics import np_rope, rel_err

CFG = GptOssConfig.from_dict(tiny.model_config()).replace(dtype="float32",
                                                          moe_backend="reference")


# --- the numpy oracle -----------------------------------------------------------------------------


def np_yarn(cfg, positions):
  """OpenAI's reference formulation of YaRN (concentration and blended inverse frequencies)."""
  d_half = cfg.head_dim / 2
  freq = cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim)
  concentration = 0.1 * math.log(cfg.rope_scaling_factor) + 1.0
  low = d_half * math.log(cfg.rope_original_context / (cfg.rope_beta_fast * 2 * math.pi)) / math.log(cfg.rope_theta)
  high = d_half * math.log(cfg.rope_original_context / (cfg.rope_beta_slow * 2 * math.pi)) / math.log(cfg.rope_theta)
  mask = 1 - np.clip((np.arange(d_half) - low) / (high - low), 0, 1)
  inv_freq = 1 / (cfg.rope_scaling_factor * freq) * (1 - mask) + 1 / freq * mask
  angles = np.outer(positions, inv_freq)
  return np.cos(angles) * concentration, np.sin(angles) * concentration


def np_attention(cfg, layer, p, x):  # x [T, D] float64
  t = x.shape[0]
  qkv = x @ p["qkv_w"] + p["qkv_b"]
  q = qkv[:, :cfg.q_size].reshape(t, cfg.num_heads, cfg.head_dim)
  k = qkv[:, cfg.q_size:cfg.q_size + cfg.kv_size].reshape(t, cfg.num_kv_heads, cfg.head_dim)
  v = qkv[:, cfg.q_size + cfg.kv_size:].reshape(t, cfg.num_kv_heads, cfg.head_dim)
  cos, sin = np_yarn(cfg, np.arange(t))
  q, k = np_rope(q, cos[:, None], sin[:, None]), np_rope(k, cos[:, None], sin[:, None])  # [T, heads, hd]
  out = np.zeros((t, cfg.num_heads, cfg.head_dim))
  for h in range(cfg.num_heads):
    kv = h // (cfg.num_heads // cfg.num_kv_heads)
    for i in range(t):
      keys = [j for j in range(i + 1) if layer % 2 or i - j < cfg.sliding_window]
      logits = np.array([q[i, h] @ k[j, kv] / math.sqrt(cfg.head_dim) for j in keys] + [p["sinks"][h]])
      w = np.exp(logits - logits.max())
      w = w[:-1] / w.sum()
      out[i, h] = sum(wj * v[j, kv] for wj, j in zip(w, keys))
  return out.reshape(t, -1) @ p["out_w"] + p["out_b"]


def np_moe(cfg, p, x):  # x [T, D]
  logits = x @ p["router_w"].T + p["router_b"]
  out = np.zeros_like(x)
  for t in range(x.shape[0]):
    top = np.argsort(-logits[t], kind="stable")[:cfg.experts_per_token]
    w = np.exp(logits[t, top] - logits[t, top].max())
    w /= w.sum()
    for e, we in zip(top, w):
      h = p["gate_up_w"][e] @ x[t] + p["gate_up_b"][e]  # checkpoint order: glu, linear interleaved
      glu, lin = np.minimum(h[0::2], 7.0), np.clip(h[1::2], -7.0, 7.0)
      act = glu / (1 + np.exp(-1.702 * glu)) * (lin + 1)
      out[t] += we * (p["down_w"][e] @ act + p["down_b"][e])
  return out


def np_rms(x, scale, eps):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * scale


def layer_params(block):
  f64 = lambda v: np.asarray(v[...], np.float64)
  gate_up = mxfp4.unpack(block.mlp.gate_up.get_value())  # back to the checkpoint layout and order
  down = mxfp4.unpack(block.mlp.down.get_value())
  return dict(
      attn_norm=f64(block.attn_norm.scale), mlp_norm=f64(block.mlp_norm.scale),
      qkv_w=f64(block.attn.qkv_weight), qkv_b=f64(block.attn.qkv_bias),
      out_w=f64(block.attn.out_weight), out_b=f64(block.attn.out_bias),
      sinks=f64(block.attn.sinks), router_w=f64(block.mlp.router_weight),
      router_b=f64(block.mlp.router_bias),
      gate_up_w=np.asarray(mxfp4.dequantize(*gate_up[:2]), np.float64),  # [E, 2I, D]
      gate_up_b=np.asarray(gate_up[2], np.float64),
      down_w=np.asarray(mxfp4.dequantize(*down[:2]), np.float64),  # [E, D, I]
      down_b=np.asarray(down[2], np.float64))


def np_forward(model, tokens):  # tokens [T]
  cfg = model.cfg
  x = np.asarray(model.embedding[...], np.float64)[tokens]
  for layer, block in enumerate(model.layers):
    p = layer_params(block)
    x = x + np_attention(cfg, layer, p, np_rms(x, p["attn_norm"], cfg.rms_norm_eps))
    x = x + np_moe(cfg, p, np_rms(x, p["mlp_norm"], cfg.rms_norm_eps))
  x = np_rms(x, np.asarray(model.norm.scale[...], np.float64), cfg.rms_norm_eps)
  return x @ np.asarray(model.unembedding[...], np.float64)


# --- tests ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(randomize):
  return randomize(GptOss(CFG, rngs=nnx.Rngs(0)), np.random.default_rng(0))


def test_yarn_tables_match_reference():
  cfg = GptOssConfig.from_dict(tiny.model_config()).replace(head_dim=64)
  cos, sin = rope_tables(cfg, jnp.arange(300)[None])
  ref_cos, ref_sin = np_yarn(cfg, np.arange(300))
  np.testing.assert_allclose(np.asarray(cos[0]), ref_cos, rtol=0, atol=2e-5)
  np.testing.assert_allclose(np.asarray(sin[0]), ref_sin, rtol=0, atol=2e-5)


def test_attention_sinks_and_sliding_window(model):
  """T = 20 > sliding_window = 8, so the even layer's window is exercised."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(1, 20, CFG.hidden_size))
  cos, sin = rope_tables(CFG, jnp.arange(20)[None])
  for layer in (0, 1):
    block = model.layers[layer]
    got = block.attn(jnp.asarray(x, jnp.float32), cos, sin, jnp.arange(20)[None])[0][0]
    assert rel_err(got, np_attention(CFG, layer, layer_params(block), x[0])) < 1e-5


def test_flash_attention_prefill_matches_numpy(model):
  """The Pallas prefill attention (bf16 operands) in the model, on both layer kinds."""
  rng = np.random.default_rng(7)
  x = rng.normal(size=(1, 20, CFG.hidden_size))
  cos, sin = rope_tables(CFG, jnp.arange(20)[None])
  for layer in (0, 1):
    attn = model.layers[layer].attn
    attn.cfg = CFG.replace(attention_backend="pallas")
    try:
      got = attn(jnp.asarray(x, jnp.float32), cos, sin, jnp.arange(20)[None])[0][0]
    finally:
      attn.cfg = CFG
    assert rel_err(got, np_attention(CFG, layer, layer_params(model.layers[layer]), x[0])) < 2e-2


def test_sliding_window_changes_even_layers_only(model):
  """Attention to keys beyond the window matters: widening it changes layer 0, not layer 1."""
  x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 20, CFG.hidden_size)), jnp.float32)
  cos, sin = rope_tables(CFG, jnp.arange(20)[None])
  for layer, should_change in ((0, True), (1, False)):
    attn = model.layers[layer].attn
    base = attn(x, cos, sin, jnp.arange(20)[None])[0]
    attn.cfg = CFG.replace(sliding_window=64)
    try:
      wide = attn(x, cos, sin, jnp.arange(20)[None])[0]
    finally:
      attn.cfg = CFG
    assert bool(jnp.any(jnp.abs(wide - base) > 1e-4)) == should_change
    assert not bool(jnp.any(jnp.abs(wide[:, :8] - base[:, :8]) > 1e-6))  # inside the window


@pytest.mark.parametrize("backend,interpret,tol", [("reference", False, 1e-5),
                                                   ("pallas", jax.default_backend() != "gpu", 2e-2)])
@pytest.mark.parametrize("shape", [(2, 9), (1, 1)], ids=["sorted_rows", "decode_rows"])
def test_moe_matches_reference(model, backend, interpret, tol, shape):
  """Router top-k + softmax over the chosen, rows sorted by expert (or, for one token's few rows,
  one tile per row), fused SwiGLU with the clamp active (inputs scaled up), weighted combine;
  the Pallas path runs bf16 operands."""
  x = np.random.default_rng(3).normal(size=(*shape, CFG.hidden_size)) * 30
  moe = model.layers[0].mlp
  moe.cfg = CFG.replace(moe_backend=backend, moe_interpret=interpret)
  try:
    got = moe(jnp.asarray(x, jnp.float32))
  finally:
    moe.cfg = CFG
  want = np_moe(CFG, layer_params(model.layers[0]), x.reshape(-1, CFG.hidden_size))
  assert rel_err(got.reshape(-1, CFG.hidden_size), want) < tol


@pytest.mark.parametrize("backend,interpret,tol", [("reference", False, 1e-5),
                                                   ("pallas", jax.default_backend() != "gpu", 2e-2)])
def test_moe_decode_rows_of_several_tokens(randomize, backend, interpret, tol):
  """One tile per row for three tokens (16 experts, so that their 6 rows still take them): each
  token's k rows, token-major, are summed back to that token."""
  cfg = CFG.replace(num_experts=16)
  assert cfg.moe_one_row_tiles(3)
  block = randomize(GptOss(cfg, rngs=nnx.Rngs(5)), np.random.default_rng(5)).layers[0]
  x = np.random.default_rng(6).normal(size=(1, 3, cfg.hidden_size)) * 30
  block.mlp.cfg = cfg.replace(moe_backend=backend, moe_interpret=interpret)
  got = block.mlp(jnp.asarray(x, jnp.float32))
  want = np_moe(cfg, layer_params(block), x.reshape(-1, cfg.hidden_size))
  assert rel_err(got.reshape(-1, cfg.hidden_size), want) < tol


def test_full_forward_matches_numpy_in_float32(model):
  tokens = np.random.default_rng(4).integers(0, CFG.vocab_size, (1, 24))
  logits = model(jnp.asarray(tokens, jnp.int32))
  assert logits.shape == (1, 24, CFG.vocab_size) and logits.dtype == jnp.float32
  want = np_forward(model, tokens[0])
  assert rel_err(logits[0], want) < 1e-4
  assert np.array_equal(np.asarray(logits[0]).argmax(-1), want.argmax(-1))


def test_ids_of_any_integer_type_are_read_as_int32():
  """Unsigned positions would let the causal mask through (a query's position minus a later
  key's wraps to a large distance) and narrow ones fail in the cache's update: both now give
  int32's logits, with a cache too."""
  model = GptOss(CFG, rngs=nnx.Rngs(0))
  tokens = np.array([[5, 9, 2, 7, 1]])
  positions = np.arange(5)[None]
  expected, _ = model.forward(tokens.astype(np.int32), positions.astype(np.int32))
  step, _ = model.forward(tokens[:, -1:].astype(np.int32), positions[:, -1:].astype(np.int32),
                          model.forward(tokens[:, :-1], positions[:, :-1],
                                        model.init_cache(1, 16))[1], start=4)
  for dtype in (np.uint32, np.uint8, np.int16, np.int64):
    for as_array in (np.asarray, jnp.asarray):
      got, _ = model.forward(as_array(tokens.astype(dtype)), as_array(positions.astype(dtype)))
      np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=str(dtype))
    caches = model.forward(tokens[:, :-1].astype(dtype), positions[:, :-1].astype(dtype),
                           model.init_cache(1, 16))[1]
    got, _ = model.forward(tokens[:, -1:].astype(dtype), positions[:, -1:].astype(dtype), caches,
                           start=4)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(step), err_msg=str(dtype))


def test_bad_forward_arguments_error():
  """Each would otherwise fail inside JAX or run: a gather clamps ids outside the vocabulary,
  and a full-attention cache too short for its keys drops the oldest."""
  model = GptOss(CFG, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="tokens must be an int array"):
    model(jnp.zeros((3,), jnp.float32))
  for bad in (CFG.vocab_size, -1):
    with pytest.raises(ValueError, match=rf"tokens hold ids in \[-?\d+, \d+\], outside the "
                                         rf"vocabulary \[0, {CFG.vocab_size}\)"):
      model(jnp.array([[1, 2, bad]], jnp.int32))
  # Host int64 ids past int32 would wrap into the vocabulary (2**32 + 5 -> 5) in jnp.asarray.
  for tokens in (np.array([[2**32 + 5, 7]]), [[2**32 + 5, 7]], np.array([[2**31 + 5]])):
    with pytest.raises(ValueError, match=r"tokens holds values outside int32: from \d+ to \d+"):
      model(tokens)
  with pytest.raises(ValueError,
                     match=r"positions holds values outside int32: from 0 to 4294967296"):
    model.forward(np.ones((1, 2), np.int32), np.array([[0, 2**32]]))
  tokens = np.ones((1, 4), np.int32)
  positions = np.arange(4, dtype=np.int32)[None]
  with pytest.raises(ValueError, match=r"positions \[1, 3\] must match tokens \[1, 4\]"):
    model.forward(tokens, positions[:, :3])
  with pytest.raises(ValueError, match="positions must be an int array"):
    model.forward(tokens, positions.astype(np.float32))
  caches = model.init_cache(1, 16)
  with pytest.raises(ValueError, match=f"caches has 1 layers, the model {CFG.num_layers}"):
    model.forward(tokens, positions, caches[:1])
  with pytest.raises(ValueError, match=r"caches\[0\] holds a batch of 2, tokens 1"):
    model.forward(tokens, positions, model.init_cache(2, 16))
  long = np.ones((1, 30), np.int32)
  with pytest.raises(ValueError, match=r"30 keys do not fit caches\[1\]'s 16 slots"):
    model.forward(long, np.arange(30, dtype=np.int32)[None], caches)
  with pytest.raises(ValueError, match=r"17 keys do not fit caches\[1\]'s 16 slots"):
    model.forward(tokens[:, :1], positions[:, :1] + 16, caches, start=16)
  model.forward(tokens[:, :1], positions[:, :1] + 15, caches, start=15)  # the last slot fits
  for start in (np.int64(16), jnp.int32(16)):  # a concrete scalar of any kind is checked
    with pytest.raises(ValueError, match=r"17 keys do not fit caches\[1\]'s 16 slots"):
      model.forward(tokens[:, :1], positions[:, :1] + 16, caches, start=start)
  for start in (-1, 4.0, np.float32(4), True, np.array([1, 2])):
    with pytest.raises(ValueError, match="start must be an integer step >= 0"):
      model.forward(tokens[:, :1], positions[:, :1], caches, start=start)
  for shape in ((1, 0), (0, 3)):
    with pytest.raises(ValueError, match="must hold at least one row and one token"):
      model(np.zeros(shape, np.int32))
  with pytest.raises(ValueError, match=r"caches\[0\] must be a LayerCache"):
    model.forward(tokens, positions, [None] * CFG.num_layers)
  one_head = GptOss(CFG.replace(num_kv_heads=1), rngs=nnx.Rngs(0)).init_cache(1, 16)
  with pytest.raises(ValueError, match=rf"caches\[0\] must be a LayerCache of \[batch, slots, "
                                       rf"{CFG.num_kv_heads}, {CFG.head_dim}\]"):
    model.forward(tokens, positions, one_head)
  small_ring = [LayerCache.empty(1, 4, CFG), *caches[1:]]  # layer 0 slides over 8 keys
  model.forward(tokens, positions, small_ring)  # 4 keys: they fit
  with pytest.raises(ValueError, match=r"5 keys do not fit caches\[0\]'s 4 slots \(a sliding"):
    model.forward(np.ones((1, 5), np.int32), np.arange(5, dtype=np.int32)[None], small_ring)
  halves = [LayerCache.empty(1, c.k.shape[1], CFG.replace(dtype="bfloat16")) for c in caches]
  with pytest.raises(ValueError, match=r"caches\[0\] holds bfloat16 keys and bfloat16 values, "
                                       r"the model computes in float32"):
    model.forward(tokens, positions, halves)
  for batch, max_len in ((2.5, 8), (2, -5), (True, 8)):
    with pytest.raises(ValueError, match="init_cache: (batch|max_len) must be an int >= 1"):
      model.init_cache(batch, max_len)
  as_lists = model.forward(tokens.tolist(), positions.tolist())[0]  # as __call__ takes them
  np.testing.assert_array_equal(as_lists, model.forward(tokens, positions)[0])


def test_config_errors():
  with pytest.raises(ValueError, match="unknown model config key"):
    GptOssConfig.from_dict({**tiny.model_config().to_dict(), "hiden_size": 3})
  with pytest.raises(ValueError, match="num_heads=6 must be a multiple of num_kv_heads=4"):
    GptOssConfig.from_dict({**tiny.model_config().to_dict(), "num_heads": 6, "num_kv_heads": 4})
  with pytest.raises(ValueError, match="num_kv_heads must be a finite number > 0, got 0"):
    GptOssConfig.from_dict({**tiny.model_config().to_dict(), "num_kv_heads": 0})
  with pytest.raises(ValueError, match="rope_beta_fast=1.0 must exceed rope_beta_slow=1.0"):
    GptOssConfig.from_dict({**tiny.model_config().to_dict(), "rope_beta_fast": 1.0})
  with pytest.raises(ValueError, match=r"ramp over rotary dims 0.51 to 1.09 must lie within"):
    GptOssConfig.from_dict({**tiny.model_config().to_dict(), "head_dim": 4})
  with pytest.raises(ValueError, match="head_dim=15 must be even"):
    GptOssConfig.from_dict({**tiny.model_config().to_dict(), "head_dim": 15})
  with pytest.raises(ValueError, match="swiglu_alpha must be a finite number > 0, got -1.0"):
    GptOssConfig.from_dict({**tiny.model_config().to_dict(), "swiglu_alpha": -1.0})
  for name in ("rope_scaling_factor", "rms_norm_eps", "swiglu_limit"):
    with pytest.raises(ValueError, match=f"{name} must be a finite number > 0, got inf"):
      GptOssConfig.from_dict({**tiny.model_config().to_dict(), name: float("inf")})
  for bad in (None, "abc"):
    with pytest.raises(TypeError, match="from_dict takes a dict or ConfigDict, got"):
      GptOssConfig.from_dict(bad)
  with pytest.raises(TypeError, match="GptOss takes a GptOssConfig .*, got dict"):
    GptOss(tiny.model_config().to_dict(), rngs=nnx.Rngs(0))
  for name, bad, kind in (("num_layers", 2.5, "an int"), ("experts_per_token", True, "an int"),
                          ("rope_theta", "1e4", "a float"), ("moe_interpret", 1, "a bool")):
    with pytest.raises(TypeError, match=f"{name} must be {kind}, got {bad!r}"):
      GptOssConfig.from_dict({**tiny.model_config().to_dict(), name: bad})


@pytest.mark.parametrize("window", [None, 4])
@jax.default_matmul_precision("highest")  # float32 on a GPU too, not TF32
def test_attention_in_query_chunks_equals_all_at_once(window):
  """Long prompts attend a chunk of queries at a time (padding the last chunk): same result."""
  from mxfp4_jax.model.gpt_oss import attend
  rng = np.random.default_rng(5)
  b, t, s, k, g, d = 2, 13, 17, 2, 3, 8
  q, keys, values = (jnp.asarray(rng.normal(size=shape), jnp.float32)
                     for shape in ((b, t, k, g, d), (b, s, k, d), (b, s, k, d)))
  q_pos = jnp.asarray(np.stack([np.arange(4, 17), np.r_[-1, -1, np.arange(11)]]), jnp.int32)
  k_pos = jnp.asarray(np.stack([np.arange(17), np.r_[np.arange(15), -1, -1]]), jnp.int32)
  sinks = jnp.asarray(rng.normal(size=(k, g)), jnp.float32)
  whole = attend(q, keys, values, q_pos, k_pos, sinks, window, query_chunk=64)
  chunked = attend(q, keys, values, q_pos, k_pos, sinks, window, query_chunk=4)
  assert np.isfinite(np.asarray(whole)).all()
  np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("window", [1, 4, 9])
@jax.default_matmul_precision("highest")  # float32 on a GPU too, not TF32
def test_prefill_chunks_on_sliding_layers_read_only_their_window(window):
  """Keys that are the queries' own tokens (left padding included): each chunk slices its window."""
  from mxfp4_jax.model.gpt_oss import attend
  rng = np.random.default_rng(6)
  b, t, k, g, d = 2, 19, 2, 3, 8
  q, keys, values = (jnp.asarray(rng.normal(size=shape), jnp.float32)
                     for shape in ((b, t, k, g, d), (b, t, k, d), (b, t, k, d)))
  pos = jnp.asarray(np.stack([np.arange(t), np.r_[[-1] * 5, np.arange(t - 5)]]), jnp.int32)
  sinks = jnp.asarray(rng.normal(size=(k, g)), jnp.float32)
  whole = attend(q, keys, values, pos, pos, sinks, window, query_chunk=64)
  sliced = attend(q, keys, values, pos, pos, sinks, window, query_chunk=4, aligned=True)
  np.testing.assert_allclose(np.asarray(sliced), np.asarray(whole), rtol=1e-6, atol=1e-6)


def test_float32_models_run_experts_in_float32():
  """The kernel takes bf16 operands, so "auto" picks the jnp reference for a float32 model."""
  base = GptOssConfig.from_dict(tiny.model_config())
  assert base.replace(dtype="float32").resolved_moe_backend == "reference"
  assert base.replace(dtype="float32").resolved_attention_backend == "xla"
  on_gpu = "pallas" if jax.default_backend() == "gpu" else "reference"
  assert base.replace(dtype="bfloat16").resolved_moe_backend == on_gpu
  assert base.replace(dtype="float32", moe_backend="pallas").resolved_moe_backend == "pallas"


@pytest.mark.parametrize("change, message", [
    (dict(moe_backend="pallas", router_backend="xla"),
     "GptOssConfig.moe_backend='pallas' compiles"),
    (dict(moe_backend="reference", router_backend="top_k"),
     "GptOssConfig.router_backend='top_k' compiles"),
    (dict(moe_backend="pallas", router_backend="auto"),  # auto resolves to the top-k kernel
     "GptOssConfig.moe_backend='pallas' and GptOssConfig.router_backend='auto' \\(here "
     "'top_k'\\) compile"),
    (dict(moe_backend="reference", attention_backend="pallas"), None)])
def test_kernels_off_the_gpu_need_interpret_mode(monkeypatch, change, message):
  """A Pallas kernel named off a GPU errors with the model config's way out (not the kernels'
  own ``interpret=True``, which the model has no argument for); attention, which the model runs
  in interpret mode by itself off a GPU, just runs."""
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  model = GptOss(CFG.replace(dtype="bfloat16", **change), rngs=nnx.Rngs(0))
  tokens = jnp.ones((1, 4), jnp.int32)
  if message is None:
    assert model(tokens).shape == (1, 4, CFG.vocab_size)
    return
  with pytest.raises(ValueError, match=f"{message} for a GPU only; on cpu set "
                                       "GptOssConfig.moe_interpret=True"):
    model(tokens)
  model = GptOss(CFG.replace(dtype="bfloat16", moe_interpret=True, **change), rngs=nnx.Rngs(0))
  assert model(tokens).shape == (1, 4, CFG.vocab_size)
