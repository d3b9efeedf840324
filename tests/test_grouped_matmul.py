"""The grouped matmul (the Pallas kernel: interpret mode on CPU, compiled on a GPU; and the jnp
reference) against a float64 numpy oracle, its argument checks, and its Triton lowering for an H100."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numerics import rel_err

from mxfp4_jax import mxfp4
from mxfp4_jax.kernels import KernelConfig, grouped_matmul, pick_config
from mxfp4_jax.kernels import tuning
from mxfp4_jax.kernels.pallas_grouped import (grouped_matmul_pallas, lut_plain_order,
                                               poisoned_outputs)
from mxfp4_jax.kernels.schedule import max_tiles
from mxfp4_jax.kernels.swiglu import swiglu as gpt_oss_swiglu
from mxfp4_jax.mxfp4.layout import kernel_byte_order

CFG = KernelConfig(block_m=16, block_n=32, num_warps=4, num_stages=2)
BACKENDS = ["pallas", "reference"]
INTERPRET = jax.default_backend() != "gpu"  # on a GPU the same tests run the compiled kernel
ALPHA, LIMIT = 1.702, 7.0


@pytest.fixture(autouse=True)
def poisoned():
  """Every kernel here writes into a NaN-filled output, on a GPU as in interpret mode."""
  with poisoned_outputs():
    yield


# --- the oracle -----------------------------------------------------------------------------------


def oracle(x, blocks, scales, bias, group_sizes, row_weights, swiglu, alpha=ALPHA, limit=LIMIT):
  """float64 numpy, from the checkpoint layout (interleaved glu/linear columns when SwiGLU).

  Returns (out, pre-activation) with rows past sum(group_sizes) zero.
  """
  # numpy first: a jax array in the arithmetic would take it to float32 (x64 is off)
  x = np.asarray(np.asarray(x), np.float64)
  bias = None if bias is None else np.asarray(np.asarray(bias), np.float64)
  w = np.asarray(mxfp4.dequantize(blocks, scales), np.float64)  # [E, N, K]
  num_rows, n = x.shape[0], w.shape[1]
  pre = np.zeros((num_rows, n))
  ends = np.cumsum(group_sizes)
  for e, (start, end) in enumerate(zip(ends - group_sizes, ends)):
    pre[start:end] = x[start:end] @ w[e].T
    if bias is not None:
      pre[start:end] += bias[e]
  out = pre.copy()
  if swiglu:
    glu = np.minimum(pre[:, 0::2], limit)
    lin = np.clip(pre[:, 1::2], -limit, limit)
    out = glu / (1 + np.exp(-alpha * glu)) * (lin + 1)
  if row_weights is not None:
    out = out * np.asarray(row_weights, np.float64)[:, None]
  out[ends[-1] if len(ends) else 0:] = 0
  return out, pre


def make_case(rng, e, k, n, p, group_sizes, bias=False, row_weights=False, swiglu=False,
              scale_range=(119, 123), x_scale=1.0, alpha=ALPHA, limit=LIMIT):
  blocks = rng.integers(0, 256, (e, n, k // 32, 16), dtype=np.uint8)
  scales = rng.integers(*scale_range, (e, n, k // 32), endpoint=True, dtype=np.uint8)
  b = rng.standard_normal((e, n)).astype(np.float32) if bias else None
  # Normalise by sqrt(K) so that pre-activations stay O(1) whatever K is.
  x = jnp.asarray(rng.standard_normal((p, k)) * x_scale * 8 / np.sqrt(k), jnp.bfloat16)
  rw = rng.uniform(0.1, 1.0, p).astype(np.float32) if row_weights else None
  group_sizes = np.asarray(group_sizes, np.int32)
  w = mxfp4.pack(blocks, scales, b, swiglu_halves=swiglu)
  ref, pre = oracle(x, blocks, scales, b, group_sizes, rw, swiglu, alpha, limit)
  return dict(x=x, w=w, group_sizes=group_sizes, row_weights=rw, swiglu=swiglu), ref, pre


def run(case, backend, config=CFG, out_dtype=None):
  return grouped_matmul(case["x"], case["w"], jnp.asarray(case["group_sizes"]), case["row_weights"],
                        activation="swiglu" if case["swiglu"] else None, backend=backend,
                        interpret=INTERPRET and backend == "pallas", config=config, out_dtype=out_dtype)


def check(out, ref, group_sizes, rtol=1e-2):
  """Relative Frobenius error, plus exact zeros in the rows past sum(group_sizes).

  The kernels' outputs start as NaN (`poisoned`), so a finite output also shows that the kernel
  wrote every element.
  """
  out = np.asarray(jnp.asarray(out).astype(jnp.float32), np.float64)
  assert out.shape == ref.shape
  assert np.isfinite(out).all()
  used = int(np.sum(group_sizes))
  np.testing.assert_array_equal(out[used:], 0)
  norm = np.linalg.norm(ref)
  if norm == 0:
    np.testing.assert_array_equal(out, 0)
  else:
    assert np.linalg.norm(out - ref) / norm <= rtol


# --- against the oracle ---------------------------------------------------------------------------

CASES = {
    # id: (E, K, N, P, group_sizes, options)
    "p0": (3, 64, 32, 0, [0, 0, 0], dict(bias=True)),
    "p1": (1, 64, 32, 1, [1], dict(bias=True, row_weights=True)),
    "p1_tail_only": (3, 64, 32, 1, [0, 0, 0], dict(bias=True)),
    "p7_padded_k": (3, 96, 32, 7, [3, 0, 2], dict(bias=True, row_weights=True)),
    "p7_swiglu": (3, 64, 64, 7, [0, 4, 3], dict(bias=True, swiglu=True)),
    "p33_e32": (32, 64, 48, 33, "random", dict(bias=True, row_weights=True)),
    "p33_e32_swiglu": (32, 64, 96, 33, "random", dict(bias=True, row_weights=True, swiglu=True)),
    "single_row_groups": (32, 64, 32, 7, "singles", dict(bias=True, swiglu=False)),
    "one_expert": (3, 128, 32, 33, [0, 33, 0], dict(row_weights=True)),
    "tail_rows": (3, 64, 64, 33, [4, 0, 9], dict(bias=True, row_weights=True, swiglu=True)),
    "p512": (3, 64, 32, 512, [200, 0, 300], dict(bias=True, row_weights=True)),
}


def group_sizes_for(rng, spec, e, p):
  if spec == "random":  # about a third of the experts empty, 3 tail rows
    keep = rng.random(e) > 0.3
    keep[rng.integers(e)] = True
    probs = rng.dirichlet(np.ones(e)) * keep
    return rng.multinomial(p - 3, probs / probs.sum())
  if spec == "singles":
    sizes = np.zeros(e, np.int64)
    sizes[rng.choice(e, p, replace=False)] = 1
    return sizes
  return spec


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_oracle(rng, name, backend):
  e, k, n, p, spec, options = CASES[name]
  sizes = group_sizes_for(rng, spec, e, p)
  case, ref, _ = make_case(rng, e, k, n, p, sizes, **options)
  check(run(case, backend), ref, sizes)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("swiglu", [False, True])
def test_gpt_oss_k(rng, backend, swiglu):
  """K = 2880, GPT-OSS's hidden size: 45 packed K steps, no K padding."""
  case, ref, _ = make_case(rng, 2, 2880, 32, 5, [2, 2], bias=True, row_weights=True, swiglu=swiglu)
  config = KernelConfig(block_m=16, block_n=16, num_warps=4, num_stages=2)  # N / 2 = 16 outputs
  check(run(case, backend, config=config), ref, case["group_sizes"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_output_is_tight(rng, backend):
  """With an f32 output only the accumulation order differs from the oracle."""
  case, ref, _ = make_case(rng, 4, 128, 48, 37, [9, 0, 17, 5], bias=True, row_weights=True)
  out = run(case, backend, out_dtype=jnp.float32)
  assert out.dtype == jnp.float32
  check(out, ref, case["group_sizes"], rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_swiglu_clamp_active(rng, backend):
  """Pre-activations well past +-7, so both clamps (glu above, linear both sides) matter."""
  case, ref, pre = make_case(rng, 2, 64, 64, 40, [25, 10], bias=True, swiglu=True,
                             scale_range=(124, 126), x_scale=2.0)
  glu, lin = pre[:35, 0::2], pre[:35, 1::2]
  assert (glu > LIMIT).mean() > 0.1 and (glu < -LIMIT).mean() > 0.1
  assert (lin > LIMIT).mean() > 0.1 and (lin < -LIMIT).mean() > 0.1
  check(run(case, backend), ref, case["group_sizes"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k_splits", [1, 2])  # split K applies the epilogue after the kernel
def test_swiglu_alpha_and_limit_are_the_callers(rng, backend, k_splits):
  """A SwiGLU of another alpha and limit (the clamp at 3 active) than GPT-OSS's 1.702 and 7."""
  alpha, limit = 1.2, 3.0
  case, ref, pre = make_case(rng, 2, 128, 64, 40, [25, 10], bias=True, row_weights=True,
                             swiglu=True, x_scale=4.0, alpha=alpha, limit=limit)
  assert (np.abs(pre[:35]) > limit).mean() > 0.1
  out = grouped_matmul(case["x"], case["w"], jnp.asarray(case["group_sizes"]),
                       case["row_weights"], activation="swiglu", backend=backend,
                       interpret=INTERPRET and backend == "pallas",
                       config=dataclasses.replace(CFG, k_splits=k_splits),
                       swiglu_alpha=alpha, swiglu_limit=limit)
  check(out, ref, case["group_sizes"])


def test_swiglu_formula():
  """GPT-OSS's SwiGLU at points on both sides of both clamps; glu is clamped from above only."""
  glu = np.array([-20, -7.5, -7, -1, 0, 0.5, 6.9, 7, 7.5, 20], np.float32)
  lin = glu[::-1].copy()
  g = np.minimum(glu.astype(np.float64), 7)
  expected = g / (1 + np.exp(-1.702 * g)) * (np.clip(lin, -7, 7) + 1)
  got = gpt_oss_swiglu(jnp.asarray(glu), jnp.asarray(lin))
  np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=1e-5, atol=0)
  for limit in (0.0, -1.0, float("nan"), False, np.float32(-2)):  # clip(linear, 1, -1): -1
    with pytest.raises(ValueError, match=re.escape(f"swiglu: limit must be > 0, got {limit!r}")):
      gpt_oss_swiglu(jnp.asarray(glu), jnp.asarray(lin), limit=limit)


def test_pick_config_rejects_sizes_that_are_no_problem():
  for args, name in (((-5, 32, 2880, 45), "num_rows"), ((4, 0, 2880, 45), "num_experts"),
                     ((4, 32, 0, 45), "out_cols"), ((4, 32, 2880, 1.5), "k_tiles")):
    with pytest.raises(ValueError, match=f"pick_config: {name} must be an int >="):
      pick_config(*args)
  assert pick_config(0, 32, 2880, 45) == pick_config(1, 32, 2880, 45)  # no rows: the smallest


@pytest.mark.parametrize("rows", [0, 1, 4, 64, 512, 2048])
def test_one_tile_per_row_picks_as_if_each_row_had_its_own_expert(rows):
  picked = pick_config(rows, 32, 2880, 45, one_tile_per_row=True)
  assert picked == pick_config(rows, max(rows, 1), 2880, 45)
  if rows == 2048:  # grouped, 64 rows an expert take larger tiles than rows one a tile
    assert picked.block_m < pick_config(rows, 32, 2880, 45).block_m


@pytest.mark.parametrize("swiglu", [False, True])
@pytest.mark.parametrize("k,k_splits", [(320, 2), (320, 3), (128, 2), (192, 5)])
def test_split_k(rng, swiglu, k, k_splits):
  """Split K sums the shares of 2..5 programs (uneven when the splits do not divide K / 64, and
  some programs with no K tiles at all) and applies the epilogue to the sum."""
  case, ref, _ = make_case(rng, 3, k, 64, 37, [11, 0, 20], bias=True, row_weights=not swiglu,
                           swiglu=swiglu)
  config = dataclasses.replace(CFG, k_splits=k_splits)
  out = np.asarray(run(case, "pallas", config=config, out_dtype=jnp.float32))
  assert np.isfinite(out).all() and not out[31:].any()
  check(out, ref, case["group_sizes"], rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ragged_edges_exact_zeros(rng, backend):
  """P = 37 is not a multiple of block_m and N = 48 not one of block_n: the last row tile and the
  last column tile slide back, yet every element is written and the tail rows are exactly 0."""
  case, ref, _ = make_case(rng, 3, 64, 48, 37, [11, 0, 9], bias=True, row_weights=True)
  out = np.asarray(run(case, backend).astype(jnp.float32))
  assert np.isfinite(out).all()
  assert not out[20:].any()
  check(out, ref, case["group_sizes"])


@pytest.mark.parametrize("p,e,row", [(5, 32, 0), (120, 4, 1), (250, 2, 3), (288, 2, 3), (292, 2, 4),
                                      (600, 2, 4)])
def test_picked_config(rng, p, e, row):
  """The kernel with pick_config's choice for each regime of rows per expert (TABLE[row])."""
  sizes = rng.multinomial(p - 2, np.ones(e) / e)
  case, ref, _ = make_case(rng, e, 64, 64, p, sizes, bias=True, row_weights=True, swiglu=True)
  config = pick_config(p, e, 32, k_tiles=1)
  assert config == dataclasses.replace(tuning.TABLE[row][1], block_n=32, k_splits=1)
  check(run(case, "pallas", config=None), ref, sizes)


@pytest.mark.parametrize("p,e,n,k_tiles,splits", [
    (1, 32, 2880, 45, 9),  # 45 programs: split as far as allowed
    (4, 32, 2880, 45, 9),  # 180 programs
    (16, 32, 2880, 45, 9),  # 720 programs
    (1, 32, 2880, 44, 4),  # 4 divides 44; 9 would not
    (1, 32, 2880, 43, 9),  # prime: no dividing count, the loop takes the largest
    (64, 32, 2880, 45, 5),  # 1440 programs: 5 divides 45 tiles
    (64, 64, 2880, 45, 5),  # 120b one-row tiles: 2880 programs allow 2, 16-row tiles take <= 9
    (256, 128, 2880, 45, 5),  # 120b sorted: 5760 programs, the same
    (1, 32, 2880, 90, 9),  # 9 splits of 10 tiles: no more than MAX_K_SPLITS
    (1024, 32, 2880, 45, 1),  # 32-row tiles keep K whole
    (16384, 32, 2880, 45, 1),
    (1, 32, 2880, 8, 2),  # at least MIN_K_TILES_PER_SPLIT tiles per split
    (1, 3, 32, 1, 1),
    (8192, 32, 2880, 45, 1),  # tiles over 16 rows keep K whole: 256 rows, 736 programs
    (256, 2, 2880, 45, 1),  # 128-row tiles of 2 experts: 90 programs, K still whole
])
def test_picked_split_k(p, e, n, k_tiles, splits):
  config = pick_config(p, e, n, k_tiles)
  assert config.k_splits == splits and type(config.k_splits) is int


def test_overridden_replaces_fields_of_every_picked_config_inside_only():
  before = pick_config(4, 32, 2880, 45)
  with tuning.overridden(prefetch=2, decode="lut"):
    inside = pick_config(4, 32, 2880, 45)
    assert pick_config(16384, 32, 2880, 45).decode == "lut"
  assert inside == dataclasses.replace(before, prefetch=2, decode="lut")
  assert pick_config(4, 32, 2880, 45) == before
  with tuning.overridden(k_splits=15, block_n=32):  # fields pick_config derives: the override wins
    assert pick_config(4, 32, 2880, 45) == dataclasses.replace(before, k_splits=15, block_n=32)
  with pytest.raises(ValueError, match="decode must be one of"):
    with tuning.overridden(decode="fast"):
      pass
  assert pick_config(4, 32, 2880, 45) == before


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,swiglu,config", [
    ("p7_padded_k", False, CFG), ("p33_e32_swiglu", True, CFG),
    ("p33_e32", False, dataclasses.replace(CFG, k_splits=2)),  # split K: epilogue by row expert
    ("p7_padded_k", False, dataclasses.replace(CFG, k_splits=2, unroll_split=True,
                                               prefetch=1)),  # 2 tiles, 1 a split
    ("p33_e32_swiglu", True, dataclasses.replace(CFG, k_splits=2, columns_first=True)),
    ("p33_e32_swiglu", True, dataclasses.replace(CFG, k_splits=3, unroll_split=True, prefetch=1,
                                                 paired_halves=True)),  # the decode sweep's
    ("single_row_groups", False, None),  # the picked config
])
def test_row_experts_in_any_order(rng, backend, name, swiglu, config):
  """Rows shuffled out of expert order, each naming its expert: the sorted result, shuffled."""
  e, k, n, p, spec, options = CASES[name]
  sizes = np.asarray(group_sizes_for(rng, spec, e, p))
  sizes[0] += p - sizes.sum()  # every row in a group (no tail rows)
  case, ref, _ = make_case(rng, e, k, n, p, sizes, **options)
  shuffle = rng.permutation(p)
  row_experts = np.repeat(np.arange(e), sizes)[shuffle]
  row_weights = None if case["row_weights"] is None else case["row_weights"][shuffle]
  out = grouped_matmul(case["x"][shuffle], case["w"], None, row_weights,
                       row_experts=jnp.asarray(row_experts, jnp.int32),
                       activation="swiglu" if swiglu else None, backend=backend,
                       interpret=INTERPRET and backend == "pallas", config=config)
  check(out, ref[shuffle], [p])


@pytest.mark.parametrize("backend", BACKENDS)
def test_traced_row_experts_out_of_range_give_zeros(rng, backend):
  case, ref, _ = make_case(rng, 3, 64, 32, 5, [2, 2, 1], bias=True, row_weights=True)
  fn = jax.jit(lambda x, w, r, rw: grouped_matmul(
      x, w, None, rw, row_experts=r, backend=backend, config=CFG,
      interpret=INTERPRET and backend == "pallas"))
  out = np.asarray(fn(case["x"], case["w"], jnp.array([0, 3, 1, -1, 2], jnp.int32),
                      case["row_weights"]).astype(jnp.float32))
  assert not out[[1, 3]].any() and np.isfinite(out).all()
  check(out[[0, 2, 4]], ref[[0, 2, 4]], [3])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes,clipped", [([12, -3, 30], [12, 0, 8]), ([12, 30, 5], [12, 8, 0])])
def test_traced_group_sizes_are_clipped(rng, backend, sizes, clipped):
  """Under jit the sizes cannot be checked, so they are clipped to fit P instead: negative ones
  to zero, and the first group to pass P, and every group after it, to end at P."""
  case, ref, _ = make_case(rng, 3, 64, 32, 20, clipped, bias=True)
  fn = jax.jit(lambda x, w, g: grouped_matmul(x, w, g, backend=backend, config=CFG,
                                              interpret=INTERPRET and backend == "pallas"))
  check(fn(case["x"], case["w"], jnp.array(sizes, jnp.int32)), ref, clipped)


# --- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("by_row", [False, True])
def test_gradients_match_float64(rng, backend, by_row):
  """d sum(out * c) by x, the row weights and the bias, against their float64 closed forms; rows
  past sum(group_sizes) get none."""
  sizes = np.array([3, 0, 4])
  case, _, pre = make_case(rng, 3, 64, 32, 9, sizes, bias=True, row_weights=True)
  x, w, rw = case["x"].astype(jnp.float32), case["w"], case["row_weights"]
  c = rng.standard_normal((9, 32))
  experts = np.repeat(np.arange(3), sizes)
  if by_row:  # each row names its expert; the two rows past the groups name none (traced: E)
    groups = dict(group_sizes=None, row_experts=jnp.asarray(np.r_[experts, 3, 3], jnp.int32))
  else:
    groups = dict(group_sizes=jnp.asarray(sizes, jnp.int32))

  def loss(x, bias, rw, groups):
    out = grouped_matmul(x, dataclasses.replace(w, bias=bias), row_weights=rw, backend=backend,
                         interpret=INTERPRET and backend == "pallas", config=CFG,
                         out_dtype=jnp.float32, **groups)
    return jnp.sum(out * c)

  dx, dbias, drw = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, w.bias, rw, groups)
  blocks, scales, _ = mxfp4.unpack(w)
  dense = np.asarray(mxfp4.dequantize(blocks, scales), np.float64)  # [E, N, K], as the oracle's
  upstream = c[:7] * np.asarray(rw, np.float64)[:7, None]  # [rows in groups, N]
  want_dx = np.zeros(x.shape)
  want_dx[:7] = np.einsum("pn,pnk->pk", upstream, dense[experts])
  want_dbias = np.stack([upstream[experts == e].sum(0) for e in range(3)])
  want_drw = np.r_[np.sum(c[:7] * pre[:7], axis=1), 0, 0]
  for got, want in ((dx, want_dx), (dbias, want_dbias), (drw, want_drw)):
    assert rel_err(got, want) < 1e-5
  assert not np.asarray(dx)[7:].any() and not np.asarray(drw)[7:].any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_swiglu_gradient_matches_float64_difference(rng, backend):
  """x's gradient through the clamped SwiGLU, along a random direction, against a central
  difference of the float64 oracle."""
  sizes = [5, 2, 6]
  case, _, _ = make_case(rng, 3, 64, 64, 13, sizes, bias=True, row_weights=True, swiglu=True)
  x, c = case["x"].astype(jnp.float32), rng.standard_normal((13, 32))
  direction = rng.standard_normal(x.shape)

  def loss(x):
    out = grouped_matmul(x, case["w"], jnp.asarray(sizes, jnp.int32), case["row_weights"],
                         activation="swiglu", backend=backend, config=CFG, out_dtype=jnp.float32,
                         interpret=INTERPRET and backend == "pallas")
    return jnp.sum(out * c)

  blocks, scales, bias = mxfp4.unpack(case["w"])  # the checkpoint's interleaved columns

  def oracle_loss(x):
    out, _ = oracle(x, blocks, scales, bias, np.asarray(sizes), case["row_weights"], True)
    return np.sum(out * c)

  step = 1e-4
  x64 = np.asarray(x, np.float64)
  want = (oracle_loss(x64 + step * direction) - oracle_loss(x64 - step * direction)) / (2 * step)
  got = float(np.sum(np.asarray(jax.grad(loss)(x), np.float64) * direction))
  assert abs(got - want) < 1e-5 * abs(want)


# --- argument checks ------------------------------------------------------------------------------


@pytest.fixture
def args(rng):
  case, _, _ = make_case(rng, 3, 64, 32, 7, [3, 0, 2], bias=True)
  return case


def call(args, **overrides):
  kwargs = dict(x=args["x"], w=args["w"], group_sizes=jnp.asarray(args["group_sizes"]),
                backend="reference")
  kwargs.update(overrides)
  return grouped_matmul(**kwargs)


@pytest.mark.parametrize("bad,error,match", [
    (dict(x=jnp.zeros((7, 96), jnp.bfloat16)), ValueError, r"x must have shape \[P, 64\]"),
    (dict(x=jnp.zeros((64,), jnp.bfloat16)), ValueError, r"x must have shape \[P, 64\]"),
    (dict(x=jnp.zeros((7, 64), jnp.int32)), TypeError, "x must be a float array"),
    (dict(group_sizes=jnp.array([3, 4], jnp.int32)), ValueError, r"group_sizes .* shape \[3\]"),
    (dict(group_sizes=jnp.array([3.0, 0.0, 2.0])), ValueError, "group_sizes must be an integer"),
    (dict(group_sizes=jnp.array([3, 0, 5], jnp.int32)), ValueError,
     "group_sizes must be >= 0 and sum to at most P=7"),
    (dict(group_sizes=jnp.array([3, -1, 2], jnp.int32)), ValueError, "group_sizes must be >= 0"),
    (dict(row_weights=jnp.ones((6,))), ValueError, r"row_weights must be a float array of shape \[7\]"),
    (dict(row_weights=jnp.ones((7,), jnp.complex64)), ValueError, "got complex64"),
    (dict(activation="swiglu"), ValueError, "needs a weight packed with swiglu_halves=True"),
    (dict(activation="gelu"), ValueError, "activation must be one of"),
    (dict(backend="triton"), ValueError, "backend must be one of"),
    (dict(backend="pallas", interpret="yes"), ValueError, "interpret must be a bool, got 'yes'"),
    (dict(w=np.zeros((3, 1, 32, 32), np.uint8)), TypeError, "w must be a PackedMXFP4"),
    (dict(row_experts=jnp.zeros(7, jnp.int32)), ValueError, "exactly one of group_sizes"),
    (dict(group_sizes=None), ValueError, "exactly one of group_sizes"),
    (dict(group_sizes=None, row_experts=jnp.zeros(6, jnp.int32)), ValueError,
     r"row_experts must be an integer array of shape \[7\]"),
    (dict(group_sizes=None, row_experts=jnp.zeros(7)), ValueError, "row_experts must be an integer"),
    (dict(group_sizes=None, row_experts=jnp.array([0, 1, 2, 3, 0, 1, 2])), ValueError,
     r"row_experts must be in \[0, 3\), got values from 0 to 3"),
    # Host int64 that int32 would wrap to valid values ([3, 0, 2] and zeros).
    (dict(group_sizes=np.array([3, 2**32, 2], np.int64)), ValueError,
     "group_sizes holds values outside int32: from 2 to 4294967296"),
    (dict(group_sizes=None, row_experts=np.array([0, 0, 0, 0, 0, 0, 2**32], np.int64)),
     ValueError, "row_experts holds values outside int32"),
    (dict(config=dict(block_m=16)), TypeError, "config must be a KernelConfig or None, got dict"),
    (dict(out_dtype="foo"), TypeError, "out_dtype must be a float dtype, got 'foo'"),
    (dict(out_dtype=jnp.int8), TypeError, "out_dtype must be a float dtype, got int8"),
    (dict(swiglu_limit="high"), TypeError, "swiglu_limit must be a concrete number, got 'high'"),
    (dict(swiglu_limit=-1.0), ValueError, "swiglu_limit must be a finite number > 0, got -1.0"),
    (dict(swiglu_alpha=float("nan")), ValueError, "swiglu_alpha must be a finite number > 0"),
])
def test_bad_arguments(args, bad, error, match):
  with pytest.raises(error, match=match):
    call(args, **bad)


def test_narrow_integer_group_sizes_and_experts_are_read_as_int32(rng):
  """In uint8 the clip to P = 300 rows would wrap to 44, and in int8 E = 128 to -128 (each row
  then an unknown expert): the same output as int32, under jit too."""
  case, ref, _ = make_case(rng, 128, 64, 32, 300, [200] + [0] * 127)
  sizes = np.asarray(case["group_sizes"])
  for dtype in (jnp.uint8, jnp.int16):
    for fn in (grouped_matmul, jax.jit(grouped_matmul, static_argnames="backend")):
      check(fn(case["x"], case["w"], jnp.asarray(sizes, dtype),
               backend="reference"), ref, sizes)
  experts = rng.integers(0, 128, 300)
  expected = grouped_matmul(case["x"], case["w"], None, row_experts=jnp.asarray(experts, jnp.int32),
                            backend="reference")
  for fn in (grouped_matmul, jax.jit(grouped_matmul, static_argnames="backend")):
    out = fn(case["x"], case["w"], None, row_experts=jnp.asarray(experts, jnp.int8),
             backend="reference")
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_x_none_is_named(args):
  with pytest.raises(TypeError, match=r"x must be a float array \[P, K\], got None"):
    call(args, x=None)


def test_x_and_w_swapped_are_named(args):
  with pytest.raises(TypeError, match="w must be a PackedMXFP4 .*, got ArrayImpl"):
    call(args, x=args["w"], w=args["x"])


def test_swiglu_weight_needs_swiglu_activation(rng):
  case, _, _ = make_case(rng, 3, 64, 64, 7, [3, 0, 2], swiglu=True)
  with pytest.raises(ValueError, match=r"activation=None needs a weight packed with swiglu_halves=False"):
    call(case)


def test_pallas_needs_16_output_features(rng):
  case, _, _ = make_case(rng, 1, 64, 16, 4, [4], swiglu=True)
  with pytest.raises(ValueError, match="at least 16 output features, got 8"):
    call(case, activation="swiglu", backend="pallas", interpret=INTERPRET)


@pytest.mark.parametrize("swiglu", [False, True])
@pytest.mark.parametrize("options", [dict(accumulate_in_mma=True), dict(prefetch_scales=True),
                                     dict(prefetch_scales=True, k_splits=2),
                                     dict(prefetch_scales=True, k_splits=5),
                                     dict(k_splits=3, unroll_split=True),
                                     dict(prefetch_scales=True, k_splits=3, unroll_split=True),
                                     dict(k_splits=2, unroll_split=True),  # 3 tiles: the loop
                                     dict(decode="bf16x2", accumulate_in_mma=True,
                                          prefetch_scales=True),
                                     dict(decode="lut", accumulate_in_mma=True),
                                     dict(decode="lut", prefetch_scales=True, k_splits=3,
                                          unroll_split=True),
                                     dict(k_splits=3, unroll_split=True, prefetch=2),
                                     dict(decode="bf16x2", accumulate_in_mma=True, k_splits=3,
                                          unroll_split=True, prefetch=1),
                                     dict(prefetch=1), dict(prefetch=2),
                                     dict(prefetch=4),  # more than the 3 tiles
                                     dict(prefetch=2, k_splits=2),  # a loop of 2, one of 1
                                     dict(decode="bf16x2", accumulate_in_mma=True, prefetch=2),
                                     dict(columns_first=True),
                                     dict(columns_first=True, k_splits=3, unroll_split=True),
                                     dict(paired_halves=True),
                                     dict(paired_halves=True, decode="bf16x2",
                                          accumulate_in_mma=True, prefetch_scales=True),
                                     dict(paired_halves=True, k_splits=3, unroll_split=True,
                                          prefetch=1),
                                     dict(paired_halves=True, k_splits=2)])
def test_kernel_options_compute_the_same_sums(rng, swiglu, options):
  """Accumulating in the MMA and prefetching scales or whole tiles (also with split K and
  unrolling) change how the kernel runs, not what it computes; K = 192 is three tiles, so the
  last prefetches clamp."""
  case, ref, _ = make_case(rng, 3, 192, 64, 37, [11, 0, 20], bias=True, row_weights=not swiglu,
                           swiglu=swiglu)
  out = run(case, "pallas", config=dataclasses.replace(CFG, **options), out_dtype=jnp.float32)
  check(out, ref, case["group_sizes"], rtol=1e-5)


@pytest.mark.parametrize("swiglu", [False, True])
@pytest.mark.parametrize("options", [dict(), dict(k_splits=3, unroll_split=True, prefetch=1),
                                     dict(k_splits=2, prefetch=1)])
def test_last_column_tile_slides_back(rng, swiglu, options):
  """32-wide output blocks over 80 output columns: the last program slides back to columns
  48-79 and writes only 64-79, which the one before it did not."""
  case, ref, _ = make_case(rng, 3, 192, 160 if swiglu else 80, 37, [11, 0, 20], bias=True,
                           row_weights=not swiglu, swiglu=swiglu)
  config = dataclasses.replace(CFG, block_n=32, **options)
  out = run(case, "pallas", config=config, out_dtype=jnp.float32)
  check(out, ref, case["group_sizes"], rtol=1e-5)


@pytest.mark.parametrize("options", [dict(), dict(k_splits=2), dict(k_splits=3, unroll_split=True)])
def test_paired_halves_compute_the_same_sums(rng, options):
  """Paired glu and linear rows, 16-wide output blocks over 40 output columns: the last program
  slides back to columns 24-39 and writes only 32-39."""
  case, ref, _ = make_case(rng, 3, 192, 80, 37, [11, 0, 20], bias=True, swiglu=True)
  config = dataclasses.replace(CFG, block_n=32, paired_halves=True, **options)
  out = run(case, "pallas", config=config, out_dtype=jnp.float32)
  check(out, ref, case["group_sizes"], rtol=1e-5)


@pytest.mark.parametrize("swiglu", [False, True])
@pytest.mark.parametrize("group_sizes", [[37, 0, 33, 16, 20], [32, 64, 1, 0, 0], [0, 0, 0, 0, 5],
                                         [0, 9, 0, 8, 0]])
@pytest.mark.parametrize("columns_first", [False, True])
def test_remainder_tiles_compute_the_same_sums(rng, swiglu, group_sizes, columns_first):
  """Rows past a group's full 32-row tiles, 16 or fewer, go to a second call with 16-row tiles
  that writes into the first call's output: groups with and without such rows, groups of them
  alone, an empty group, tail rows (the third case), and the tail alone writes zeros; fewer rows
  than the large tile but more than the small one (the last case: 20 rows, of which the small
  tiles must read no row past the end); in either launch order."""
  case, ref, _ = make_case(rng, 5, 128, 64, sum(group_sizes) + 3, group_sizes, bias=True,
                           row_weights=not swiglu, swiglu=swiglu)
  config = dataclasses.replace(CFG, block_m=32, remainder_block_m=16, columns_first=columns_first)
  out = run(case, "pallas", config=config, out_dtype=jnp.float32)
  check(out, ref, case["group_sizes"], rtol=1e-5)


@pytest.mark.skipif(INTERPRET, reason="interpret mode runs the integer decode in their place "
                    "(tests/test_ptx_decode.py runs their PTX)")
@pytest.mark.parametrize("decode", ["bf16x2", "lut"])
def test_ptx_decode_computes_the_same_sums(rng, decode):
  """The PTX decodes, inline PTX on a GPU, inside the whole kernel."""
  case, ref, _ = make_case(rng, 3, 128, 64, 21, [7, 0, 10], bias=True, swiglu=True)
  out = run(case, "pallas", config=dataclasses.replace(CFG, decode=decode),
            out_dtype=jnp.float32)
  check(out, ref, case["group_sizes"], rtol=1e-5)


def test_lut_values_return_to_plain_order():
  """The LUT decode's outputs (byte i of each word) reassemble to the plain K order: byte 4 w + i
  of the layout's order is word w's byte i."""
  stored = jnp.arange(5 * 32).reshape(5, 32)  # distinct values, in the layout's byte order
  by_byte = [stored.reshape(5, 8, 4)[:, :, i] for i in range(4)]
  np.testing.assert_array_equal(lut_plain_order(by_byte), kernel_byte_order(stored))


def test_kernel_config_rejects_bad_blocks():
  with pytest.raises(TypeError, match="k_splits must be an int, got 5.0"):
    KernelConfig(block_m=16, block_n=32, num_warps=4, num_stages=2, k_splits=5.0)
  with pytest.raises(TypeError, match="k_splits must be an int, got True"):
    KernelConfig(block_m=16, block_n=32, num_warps=4, num_stages=2, k_splits=True)
  with pytest.raises(TypeError, match="accumulate_in_mma must be a bool, got 'no'"):
    KernelConfig(block_m=16, block_n=32, num_warps=4, num_stages=2, accumulate_in_mma="no")
  with pytest.raises(ValueError, match="decode must be"):
    KernelConfig(block_m=16, block_n=32, num_warps=4, num_stages=2, decode="fast")
  with pytest.raises(ValueError, match="prefetch must be >= 0, got -1"):
    KernelConfig(block_m=16, block_n=32, num_warps=4, num_stages=2, prefetch=-1)
  for name in ("k_splits", "num_stages"):
    with pytest.raises(ValueError, match=f"KernelConfig.{name} must be an int >= 1, got 0"):
      dataclasses.replace(CFG, **{name: 0})
  with pytest.raises(ValueError, match="block_n=48 must be a power of two >= 16"):
    KernelConfig(block_m=16, block_n=48, num_warps=4, num_stages=2)
  with pytest.raises(ValueError, match="block_m=8 must be a power of two >= 16"):
    KernelConfig(block_m=8, block_n=32, num_warps=4, num_stages=2)
  with pytest.raises(ValueError, match="KernelConfig.num_warps must be a power of two, got 6"):
    KernelConfig(block_m=16, block_n=32, num_warps=6, num_stages=2)
  for rest in (8, 24):
    with pytest.raises(ValueError, match=f"remainder_block_m={rest} must be 0 or a power of two "
                                         ">= 16"):
      KernelConfig(block_m=32, block_n=32, num_warps=4, num_stages=2, remainder_block_m=rest)


@pytest.mark.parametrize("swiglu", [False, True])
def test_config_wider_than_output_is_rejected(rng, swiglu):
  """With block_n > out_cols the last column tile starts at out_cols - block_n < 0: reads before
  the weights and an output tile wider than the output. It should be refused up front."""
  case, _, _ = make_case(rng, 2, 64, 32 if swiglu else 16, 20, [8, 8], swiglu=swiglu)
  with pytest.raises(ValueError, match="block_n"):
    call(case, activation="swiglu" if swiglu else None, backend="pallas", interpret=INTERPRET,
         config=CFG)


def test_paired_halves_block_as_wide_as_the_output_runs(rng):
  """Paired glu and linear rows: a 32-row block writes 16 output columns, which 16 fill."""
  case, ref, _ = make_case(rng, 2, 64, 32, 20, [8, 9], bias=True, swiglu=True)
  config = dataclasses.replace(CFG, paired_halves=True)
  check(run(case, "pallas", config=config), ref, case["group_sizes"])


# --- Triton lowering ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    "config", [c for _, c in tuning.TABLE] + [dataclasses.replace(tuning.TABLE[0][1], k_splits=3,
                                                                  unroll_split=False),
                                              dataclasses.replace(tuning.TABLE[0][1], k_splits=3),
                                              dataclasses.replace(tuning.TABLE[0][1],
                                                                  prefetch_scales=True),
                                              dataclasses.replace(tuning.TABLE[0][1], decode="lut",
                                                                  k_splits=3),
                                              dataclasses.replace(tuning.TABLE[0][1], k_splits=3,
                                                                  prefetch=4),
                                              dataclasses.replace(tuning.TABLE[0][1], k_splits=1,
                                                                  unroll_split=False, prefetch=2),
                                              dataclasses.replace(tuning.TABLE[0][1], k_splits=9),
                                              dataclasses.replace(tuning.TABLE[-1][1],
                                                                  remainder_block_m=0),
                                              dataclasses.replace(tuning.TABLE[0][1],
                                                                  paired_halves=True)],
    ids=lambda c: (f"bm{c.block_m}_bn{c.block_n}_splits{c.k_splits}_"
                   f"{c.decode}{'_mma' if c.accumulate_in_mma else ''}"
                   f"{'_prefetch' if c.prefetch_scales else ''}{'_straight' if c.unroll_split else ''}"
                   f"{f'_ahead{c.prefetch}' if c.prefetch else ''}"
                   f"{f'_rest{c.remainder_block_m}' if c.remainder_block_m else ''}"
                   f"{'_columns_first' if c.columns_first else ''}"
                   f"{'_paired' if c.paired_halves else ''}"))
@pytest.mark.parametrize("swiglu", [True, False], ids=["gate_up", "down"])
def test_lowers_to_triton_for_h100(lowered_for_h100, config, swiglu):
  """Lower (no compile) the kernel for CUDA at GPT-OSS-120B expert shapes, on this CPU-only
  machine (conftest's ``lowered_for_h100``)."""
  e, k, p = 32, 2880, 256
  n = 5760 if swiglu else 2880
  out_cols = n // 2 if swiglu else n
  sds = jax.ShapeDtypeStruct
  w = mxfp4.PackedMXFP4(
      values=sds((e, k // 64, n, 32), jnp.uint8), scales=sds((e, k // 32, n), jnp.uint8),
      bias=sds((e, n), jnp.float32), in_features=k, swiglu_halves=swiglu)
  x, group_sizes = sds((p, k), jnp.bfloat16), sds((e,), jnp.int32)
  row_weights = None if swiglu else sds((p,), jnp.float32)

  def f(x, w, group_sizes, row_weights):
    return grouped_matmul_pallas(x, w, group_sizes, row_weights, cfg=config,
                                 activation="swiglu" if swiglu else None, out_dtype=jnp.bfloat16,
                                 interpret=False, swiglu_alpha=ALPHA, swiglu_limit=LIMIT)

  text = jax.jit(f).trace(x, w, group_sizes, row_weights).lower(
      lowering_platforms=("cuda",)).as_text()
  assert [ok for ok, _ in lowered_for_h100] == [True] * (2 if config.remainder_block_m else 1)
  inline_asm = lowered_for_h100[-1][1]
  assert "__gpu$xla.gpu.triton" in text
  assert ("mul.rn.bf16x2" in inline_asm) == (config.decode != "integer")
  assert ("0x6240" in inline_asm) == (config.decode == "lut")
  assert "mxfp4_grouped_matmul" + ("_swiglu" if swiglu else "") in text
  out_bn = config.out_block_n(swiglu)
  grid = (max_tiles(p, e, config.block_m), -(-out_cols // out_bn))
  grid = (*(grid[::-1] if config.columns_first else grid), config.k_splits)
  assert re.search(rf"grid_x = {grid[0]} : i32, grid_y = {grid[1]} : i32, grid_z = {grid[2]}",
                   text)

