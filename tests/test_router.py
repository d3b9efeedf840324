"""The decode-step router kernel (interpret mode on CPU, compiled on a GPU) against a float64
oracle of RMSNorm, router logits, top-k and the softmax over the chosen experts, and wired into
the MoE against the jnp router."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from mxfp4_jax.kernels import router
from mxfp4_jax.model import GptOssConfig
from mxfp4_jax.model.gpt_oss import MoE, RMSNorm

INTERPRET = jax.default_backend() != "gpu"
EPS = 1e-5


def random_router(rng, tokens, hidden, experts):
  x = jnp.asarray(rng.standard_normal((tokens, hidden)) * 3, jnp.bfloat16)
  scale = jnp.asarray(rng.uniform(0.5, 1.5, hidden), jnp.float32)
  weight = jnp.asarray(rng.standard_normal((hidden, experts)) * 4 / np.sqrt(hidden), jnp.bfloat16)
  bias = jnp.asarray(rng.standard_normal(experts) * 0.3, jnp.bfloat16)
  return x, scale, weight, bias


def oracle(x, scale, weight, bias):
  """float64: normed rows [N, D] and router logits [N, E]."""
  f64 = lambda a: np.asarray(jnp.asarray(a).astype(jnp.float32), np.float64)
  x = f64(x)
  normed = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * f64(scale)
  return normed, normed @ f64(weight) + f64(bias)


@pytest.mark.parametrize("tokens, hidden, experts, k", [
    (1, 2880, 32, 4),  # a 20b decode step at batch 1
    (4, 128, 32, 4),  # 16 rows: one whole program
    (16, 192, 128, 4),  # 64 rows over 4 programs, 120b's expert count
    (3, 80, 16, 2),  # 6 rows: part of a program; hidden in pieces of 64 and 16
])
def test_matches_float64_oracle(rng, tokens, hidden, experts, k):
  args = random_router(rng, tokens, hidden, experts)
  rows, chosen, weights = router.route_rows_pallas(*args, k=k, eps=EPS, interpret=INTERPRET)
  assert rows.shape == (tokens * k, hidden) and rows.dtype == jnp.bfloat16
  assert chosen.shape == weights.shape == (tokens * k,)
  normed, logits = oracle(*args)

  rows = np.asarray(rows.astype(jnp.float32), np.float64)
  want_rows = np.repeat(normed, k, axis=0)
  assert np.linalg.norm(rows - want_rows) / np.linalg.norm(want_rows) < 5e-3

  chosen, weights = np.asarray(chosen).reshape(tokens, k), np.asarray(weights).reshape(tokens, k)
  # The choice, in order, is the float64 top k up to bf16 rounding of the logits: an expert
  # may only swap with one whose logit is this close.
  assert all(len(set(row)) == k for row in chosen)
  want_top = -np.sort(-logits, axis=1)[:, :k]
  np.testing.assert_allclose(np.take_along_axis(logits, chosen, axis=1), want_top, atol=0.05)
  top = np.take_along_axis(logits, chosen, axis=1)
  want_weights = np.exp(top - top.max(axis=1, keepdims=True))
  want_weights /= want_weights.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(weights, want_weights, atol=2e-2)
  np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-5)


def test_same_as_jnp_router_bits(rng):
  """Same experts and rows as the jnp path the MoE takes at other sizes (rounding included)."""
  x, scale, weight, bias = random_router(rng, 4, 256, 32)
  rows, chosen, weights = router.route_rows_pallas(x, scale, weight, bias, k=4, eps=EPS,
                                                   interpret=INTERPRET)
  normed = router.rms_norm(x, scale, EPS)
  want_experts, want_weights = router.top_k_softmax(normed @ weight + bias, 4)
  np.testing.assert_array_equal(np.asarray(chosen), np.asarray(want_experts).reshape(-1))
  np.testing.assert_allclose(np.asarray(weights), np.asarray(want_weights).reshape(-1), atol=1e-6)
  np.testing.assert_allclose(np.asarray(rows.astype(jnp.float32)),
                             np.asarray(jnp.repeat(normed, 4, axis=0).astype(jnp.float32)),
                             rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("change, message", [
    (dict(x=jnp.zeros((2, 72), jnp.bfloat16), weight=jnp.zeros((72, 32), jnp.bfloat16),
          scale=jnp.ones(72), bias=jnp.zeros(32, jnp.bfloat16)), "D a multiple of 16"),
    (dict(bias=jnp.zeros(16, jnp.bfloat16)), "bias"),
    (dict(x=jnp.zeros((2, 128), jnp.float32)), "needs bf16 x"),
    (dict(weight=jnp.zeros((128, 24), jnp.bfloat16), bias=jnp.zeros(24, jnp.bfloat16)),
     "power-of-two"),
])
def test_bad_input_errors(change, message):
  args = dict(x=jnp.zeros((2, 128), jnp.bfloat16), scale=jnp.ones(128),
              weight=jnp.zeros((128, 32), jnp.bfloat16), bias=jnp.zeros(32, jnp.bfloat16))
  args.update(change)
  with pytest.raises(ValueError, match=message):
    router.route_rows_pallas(args["x"], args["scale"], args["weight"], args["bias"], k=4,
                             eps=EPS, interpret=True)


def test_moe_decode_with_router_kernel_matches_jnp_router():
  """One token through a bf16 MoE with 16 experts: the router kernel path (norm given) against
  the same MoE fed the normed token (jnp router), both on the Pallas expert kernels."""
  cfg = GptOssConfig.from_dict(tiny.model_config()).replace(
      num_experts=16, experts_per_token=4, moe_backend="pallas", moe_interpret=INTERPRET)
  moe = MoE(cfg, rngs=nnx.Rngs(0))
  norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
  norm.scale[...] = jnp.asarray(np.random.default_rng(1).uniform(0.5, 1.5, cfg.hidden_size),
                                jnp.float32)
  moe.router_weight[...] = moe.router_weight[...] * 30  # routing far from ties
  x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 1, cfg.hidden_size)) * 3, jnp.bfloat16)
  assert "moe_router" in str(jax.make_jaxpr(lambda x: moe(x, norm))(x))  # the kernel path
  got = np.asarray(moe(x, norm).astype(jnp.float32), np.float64)
  want = np.asarray(moe(norm(x)).astype(jnp.float32), np.float64)
  assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-2
