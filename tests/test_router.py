"""The MoE router's top-k kernel (bias, top-k and softmax after XLA's product), in interpret
mode on CPU, against a float64 numpy oracle and against its jnp definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from mxfp4_jax.kernels import router
from mxfp4_jax.model import GptOss, GptOssConfig

INTERPRET = jax.default_backend() != "gpu"


def inputs(n, d, e, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  x = jax.random.normal(keys[0], (n, d)).astype(jnp.bfloat16)  # like normalized tokens
  weight = (jax.random.normal(keys[1], (e, d)) * d ** -0.5).astype(jnp.bfloat16)
  bias = (jax.random.normal(keys[2], (e,)) * 0.1).astype(jnp.bfloat16)
  return x, weight, bias


def numpy_route(x, weight, bias, k):
  x, weight, bias = (np.asarray(a, np.float64) for a in (x, weight, bias))
  logits = x @ weight.T + bias
  return logits, np.argsort(-logits, axis=-1, kind="stable")[:, :k]


def assert_routes(experts, weights, logits, want_experts, weights_tol=5e-3):
  """The chosen experts hold the top k's exact logits (rounding may swap near-equal ones), and
  their weights are the softmax of those exact logits."""
  experts, weights = np.asarray(experts), np.asarray(weights)
  chosen = np.take_along_axis(logits, experts, -1)
  assert np.abs(chosen - np.take_along_axis(logits, want_experts, -1)).max() < 2e-2
  assert (experts == want_experts).mean() > 0.9
  want_weights = np.exp(chosen - chosen.max(-1, keepdims=True))
  want_weights /= want_weights.sum(-1, keepdims=True)
  assert np.abs(weights - want_weights).max() < weights_tol
  assert np.allclose(weights.sum(-1), 1.0, atol=1e-6)


def run_kernel(*args, k):
  return router.route(*args, k=k, backend="top_k", interpret=INTERPRET)


@pytest.mark.parametrize("n,d,e,k", [(1, 2880, 32, 4), (7, 192, 8, 2), (33, 128, 128, 4),
                                     (16, 64, 5, 1)])
def test_matches_float64(n, d, e, k):
  """Fresh random inputs; tokens past a whole block (33), experts padded to a power of two (5)."""
  args = inputs(n, d, e, seed=n)
  experts, weights = run_kernel(*args, k=k)
  logits, want_experts = numpy_route(*args, k)
  assert experts.shape == (n, k) and experts.dtype == jnp.int32
  assert_routes(experts, weights, logits, want_experts)


@pytest.mark.parametrize("n,e,bias_dtype", [(3, 32, jnp.bfloat16), (20, 16, jnp.bfloat16),
                                            (17, 64, jnp.bfloat16), (5, 32, jnp.float32)])
def test_equals_its_jnp_definition(n, e, bias_dtype):
  """Same roundings as `route_reference` (bias added in bf16, a float32 one rounded first): the
  same experts; equal weights in interpret mode (the GPU's exp may move the last bits)."""
  x, weight, _ = inputs(n, 256, e, seed=7)
  bias = jax.random.normal(jax.random.key(8), (e,), bias_dtype) * 0.1  # float32: off bf16's grid
  args = x, weight, bias
  experts, weights = run_kernel(*args, k=4)
  want_experts, want_weights = router.route(*args, k=4)
  np.testing.assert_array_equal(np.asarray(experts), np.asarray(want_experts))
  np.testing.assert_allclose(np.asarray(weights), np.asarray(want_weights),
                             rtol=0 if INTERPRET else 1e-6, atol=0 if INTERPRET else 1e-7)


def test_ties_go_to_the_lowest_expert():
  """A zero weight leaves the bias as the logits: equal biases are picked lowest index first."""
  x, weight, _ = inputs(2, 64, 16)
  bias = jnp.array([0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], jnp.bfloat16)
  experts, weights = run_kernel(x, jnp.zeros_like(weight), bias, k=4)
  np.testing.assert_array_equal(np.asarray(experts), [[1, 3, 4, 8]] * 2)
  np.testing.assert_allclose(np.asarray(weights), 0.25)


def test_nan_logits_rank_first_as_in_lax_top_k():
  """A token with NaN logits gets experts that exist (the NaNs' first, lowest id first, then the
  largest numbers) and NaN weights; the other tokens are routed as without it."""
  x, weight, bias = inputs(3, 64, 16, seed=3)
  x = x.at[0, 5].set(jnp.nan)  # every logit of token 0 NaN
  bias = bias.at[jnp.array([2, 9])].set(jnp.nan)  # experts 2 and 9 NaN for every token
  experts, weights = run_kernel(x, weight, bias, k=4)
  experts = np.asarray(experts)
  np.testing.assert_array_equal(experts[0], [0, 1, 2, 3])
  np.testing.assert_array_equal(experts[1:, :2], [[2, 9], [2, 9]])
  finite_bias = bias.at[jnp.array([2, 9])].set(-jnp.inf)
  want_experts, _ = router.route(x[1:], weight, finite_bias, k=2)
  np.testing.assert_array_equal(experts[1:, 2:], np.asarray(want_experts))
  assert np.isnan(np.asarray(weights)).all()


def test_a_row_with_fewer_than_k_finite_logits_gets_k_experts():
  """Experts at -inf logits are picked after the others, lowest id first (as lax.top_k), each
  once; their weights are 0."""
  x, weight, _ = inputs(2, 64, 8)
  bias = jnp.full(8, -jnp.inf, jnp.bfloat16).at[jnp.array([3, 6])].set(0)
  experts, weights = run_kernel(x, weight, bias, k=4)
  want_experts, _ = router.route(x, weight, bias, k=4)
  np.testing.assert_array_equal(np.sort(np.asarray(experts)[:, :2]), [[3, 6], [3, 6]])
  np.testing.assert_array_equal(np.asarray(experts)[:, 2:], [[0, 1], [0, 1]])
  np.testing.assert_array_equal(np.asarray(experts), np.asarray(want_experts))
  np.testing.assert_array_equal(np.asarray(weights)[:, 2:], 0)


def test_no_tokens():
  x, weight, bias = inputs(1, 64, 16)
  experts, weights = run_kernel(x[:0], weight, bias, k=4)
  assert experts.shape == (0, 4) and weights.shape == (0, 4)


@pytest.mark.parametrize("change,match", [
    (dict(weight=jnp.ones((16, 32), jnp.bfloat16)), r"needs weight \[E, 64\]"),
    (dict(bias=jnp.zeros(3, jnp.bfloat16)), "bias must have shape"),
    (dict(x=jnp.ones((2, 64), jnp.float32)), "x is float32"),
    (dict(k=3), "k=3 is not a power of two"),
    (dict(backend="fused"), "router backend must be one of"),
    (dict(interpret=1), "interpret must be a bool, got 1"),
    (dict(x=jnp.ones(64, jnp.bfloat16)), r"router: x must be \[N, D\], got \(64,\)"),
    (dict(x=jnp.ones((1, 2, 64), jnp.bfloat16)), r"router: x must be \[N, D\], got \(1, 2, 64\)"),
    (dict(k=17), "k must be an int from 1 to the 16 experts, got 17"),
    (dict(k=0), "k must be an int from 1 to the 16 experts, got 0"),
    (dict(k=0, backend="xla"), "k must be an int from 1 to the 16 experts, got 0"),
    (dict(k=True, backend="xla"), "k must be an int from 1 to the 16 experts, got True"),
    (dict(k=2.0, backend="xla"), "k must be an int from 1 to the 16 experts, got 2.0"),
    (dict(x=jnp.ones((2, 64), jnp.int32), backend="xla"), "router: x must be a float array, got int32"),
    (dict(weight=jnp.ones((16, 64), jnp.int8), backend="xla"), "router: weight must be a float"),
])
def test_bad_input_errors(change, match):
  x, weight, bias = inputs(2, 64, 16)
  args = dict(x=x, weight=weight, bias=bias, k=4, backend="top_k", interpret=True) | change
  with pytest.raises(ValueError, match=match):
    router.route(args["x"], args["weight"], args["bias"], k=args["k"], backend=args["backend"],
                 interpret=args["interpret"])


@pytest.mark.parametrize("backend", router.BACKENDS)
def test_a_list_for_an_array_is_named(backend):
  x, weight, bias = inputs(2, 64, 16)
  with pytest.raises(TypeError, match="router: bias must be an array, got list"):
    router.route(x, weight, [0.0] * 16, k=4, backend=backend, interpret=True)
  with pytest.raises(TypeError, match="route_normalized: norm_weight must be an array, got list"):
    router.route_normalized(x.astype(jnp.bfloat16), [1.0] * 64, 1e-5, weight, bias, k=4,
                            interpret=True)


@pytest.mark.parametrize("k", [0, 3, 32])
def test_kernel_unsupported_reason_names_k(k):
  assert router.kernel_unsupported_reason(jnp.bfloat16, k, 16).startswith(f"k={k} is not")


def numpy_rms_norm(h, weight, eps):
  h = np.asarray(jnp.asarray(h).astype(jnp.float32), np.float64)
  return h / np.sqrt((h * h).mean(-1, keepdims=True) + eps) * np.asarray(weight, np.float64)


@pytest.mark.parametrize("n,d,e,k,scale,eps", [(1, 2880, 32, 4, 40, 1e-5),
                                               (8, 2880, 128, 4, 40, 1e-5),
                                               (3, 200, 5, 2, 40, 1e-5),
                                               (2, 256, 16, 2, 0.05, 1e-2)])
def test_route_normalized_matches_float64(n, d, e, k, scale, eps):
  """The norm folded into the router's kernel: a residual of large scale (the norm matters),
  D not a power of two (masked columns), experts padded (5); a small residual under a larger
  eps (eps matters). The rows are each token normalized, k times, rounded to bf16 once."""
  _, weight, bias = inputs(n, d, e, seed=n + 1)
  h = jax.random.normal(jax.random.PRNGKey(n), (n, d)) * scale + 3 * scale / 40
  h = h.astype(jnp.bfloat16)
  norm_weight = jax.random.uniform(jax.random.PRNGKey(9), (d,), jnp.float32, 0.5, 1.5)
  experts, weights, rows = router.route_normalized(h, norm_weight, eps, weight, bias, k=k,
                                                   interpret=INTERPRET)
  x = numpy_rms_norm(h, norm_weight, eps)
  logits, want_experts = numpy_route(x, weight, bias, k)
  assert_routes(experts, weights, logits, want_experts)
  assert rows.shape == (n * k, d) and rows.dtype == jnp.bfloat16
  got_rows = np.asarray(rows.astype(jnp.float32), np.float64)
  np.testing.assert_allclose(got_rows, np.repeat(x, k, axis=0), rtol=2 ** -8, atol=1e-6)


def test_route_normalized_rejects_bad_input_and_takes_no_tokens():
  _, weight, bias = inputs(2, 64, 16)
  h = jnp.ones((2, 64), jnp.bfloat16)
  with pytest.raises(ValueError, match=r"norm_weight must have shape \[64\]"):
    router.route_normalized(h, jnp.ones(32), 1e-5, weight, bias, k=4, interpret=True)
  with pytest.raises(ValueError, match=r"router: h must be \[N, D\], got \(64,\)"):
    router.route_normalized(h[0], jnp.ones(64), 1e-5, weight, bias, k=4, interpret=True)
  with pytest.raises(ValueError, match="k must be an int from 1 to the 16 experts, got 0"):
    router.route_normalized(h, jnp.ones(64), 1e-5, weight, bias, k=0, interpret=True)
  for eps in (-1.0, float("nan"), "a"):
    with pytest.raises(ValueError, match=r"route_normalized: eps must be a concrete number >= 0"):
      router.route_normalized(h, jnp.ones(64), eps, weight, bias, k=4, interpret=True)
  with pytest.raises(ValueError, match="at most 8 tokens"):
    router.route_normalized(jnp.ones((9, 64), jnp.bfloat16), jnp.ones(64), 1e-5, weight, bias,
                            k=4, interpret=True)
  with pytest.raises(ValueError, match=r"h must have at least one feature, got \[N, 0\]"):
    router.route_normalized(h[:, :0], jnp.ones(0), 1e-5, weight[:, :0], bias, k=4,
                            interpret=True)
  experts, weights, rows = router.route_normalized(h[:0], jnp.ones(64), 1e-5, weight, bias, k=4,
                                                   interpret=True)
  assert experts.shape == (0, 4) and weights.shape == (0, 4) and rows.shape == (0, 64)


@pytest.mark.parametrize("tokens,experts", [(1, 4), (3, 16)])
def test_model_moe_takes_the_norm_in_the_router_kernel(randomize, tokens, experts):
  """A decode step's MoE given the residual and its norm (the fused router) agrees with the MoE
  of the normalized tokens through the jnp reference; the norm's scale and the router's bias are
  random, so that dropping either shows. Three tokens: the router's kernel writes each token's k
  rows token-major, as the reference path's repeat does (both paths share the sum over a
  token's rows, which tests/test_model.py checks against the float64 MoE)."""
  cfg = GptOssConfig.from_dict(tiny.model_config()).replace(moe_interpret=True,
                                                            num_experts=experts)
  block = randomize(GptOss(cfg, rngs=nnx.Rngs(1)), np.random.default_rng(2)).layers[0]
  h = jax.random.normal(jax.random.PRNGKey(3), (1, tokens, cfg.hidden_size)).astype(
      jnp.bfloat16) * 9
  assert cfg.moe_one_row_tiles(tokens)  # the one-row tiles that take the router's rows
  got = block.mlp(h, block.mlp_norm)
  block.mlp.cfg = cfg.replace(moe_backend="reference", moe_interpret=False, router_backend="xla")
  want = block.mlp(block.mlp_norm(h))
  err = jnp.linalg.norm((got - want).astype(jnp.float32)) / jnp.linalg.norm(want.astype(jnp.float32))
  assert float(err) < 2e-2


@pytest.mark.parametrize("backend", ["auto", "top_k"])
def test_model_moe_routes_through_the_kernel(backend):
  """A bf16 MoE block with the kernels in interpret mode agrees with its jnp reference path."""
  cfg = GptOssConfig.from_dict(tiny.model_config()).replace(moe_interpret=True,
                                                            router_backend=backend)
  block = GptOss(cfg, rngs=nnx.Rngs(1)).layers[0]
  x = jax.random.normal(jax.random.PRNGKey(2), (1, 3, cfg.hidden_size)).astype(jnp.bfloat16) * 4
  assert cfg.resolved_router_backend == "top_k"  # "auto" picks the kernel
  got = block.mlp(x)
  block.mlp.cfg = cfg.replace(moe_backend="reference", moe_interpret=False, router_backend="xla")
  want = block.mlp(x)
  err = jnp.linalg.norm((got - want).astype(jnp.float32)) / jnp.linalg.norm(want.astype(jnp.float32))
  assert float(err) < 5e-3


def test_router_backend_config():
  cfg = GptOssConfig.from_dict(tiny.model_config())
  assert cfg.replace(dtype="float32").resolved_router_backend == "xla"
  assert cfg.replace(moe_interpret=True).resolved_router_backend == "top_k"
  with pytest.raises(ValueError, match="router_backend must be"):
    cfg.replace(router_backend="fused")


def test_lowers_to_triton_for_h100(lowered_for_h100):
  """Lowered (not compiled) for CUDA at GPT-OSS-120B's router shape, the module verified."""
  sds = jax.ShapeDtypeStruct
  f = lambda x, w, b: router.route(x, w, b, k=4, backend="top_k")
  text = jax.jit(f).trace(sds((64, 2880), jnp.bfloat16), sds((128, 2880), jnp.bfloat16),
                          sds((128,), jnp.bfloat16)).lower(lowering_platforms=("cuda",)).as_text()
  assert [ok for ok, _ in lowered_for_h100] == [True]
  assert "moe_router_top_k" in text and "grid_x = 4 : i32" in text
