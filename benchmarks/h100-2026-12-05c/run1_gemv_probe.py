"""Batch-1 dense projections: a Pallas split-K GEMV against XLA's product."""
import itertools, sys, functools
import jax, jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton
from mxfp4_jax.benchmarking import time_per_call

def gemv_shares(x, w, *, layout, bn, bk, splits, num_warps, num_stages):
  m = x.shape[0]
  if layout == "in_out":
    K, N = w.shape
  else:
    N, K = w.shape
  per = K // splits
  assert per * splits == K and per % bk == 0 and N % bn == 0, (K, N, splits, bk, bn)
  rows = jnp.minimum(jnp.arange(16), m - 1)
  def kernel(x_ref, w_ref, o_ref):
    j, s = pl.program_id(0), pl.program_id(1)
    k0 = s * per
    r = jnp.minimum(jax.lax.broadcasted_iota(jnp.int32, (16,), 0), m - 1)
    def body(i, acc):
      k = pl.multiple_of(k0 + i * bk, bk)
      xt = x_ref[r, pl.ds(k, bk)]
      if layout == "in_out":
        return acc + pltriton.dot(xt, w_ref[pl.ds(k, bk), pl.ds(j * bn, bn)])
      return acc + pltriton.dot(w_ref[pl.ds(j * bn, bn), pl.ds(k, bk)], xt, trans_b=True)
    shape = (16, bn) if layout == "in_out" else (bn, 16)
    acc = jax.lax.fori_loop(0, per // bk, body, jnp.zeros(shape, jnp.float32))
    if layout != "in_out":
      acc = acc.T
    o_ref[s, :, pl.ds(j * bn, bn)] = acc
  return pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct((splits, 16, N), jnp.float32),
                        grid=(N // bn, splits),
                        compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages))(x, w)

SHAPES = {"qkv": (2880, 5120), "out": (4096, 2880)}
key = jax.random.PRNGKey(0)
print(jax.devices()[0].device_kind, flush=True)
for name, (k, n) in SHAPES.items():
  nbytes = k * n * 2
  copies = max(4, -(-int(200e6) // nbytes))
  ws = [jax.random.normal(jax.random.fold_in(key, i), (k, n), jnp.bfloat16) for i in range(copies)]
  wts = [jnp.asarray(w.T) for w in ws]
  m = 1
  xs = [jax.random.normal(jax.random.fold_in(key, 100 + i), (m, k), jnp.bfloat16) for i in range(copies)]
  ref = (xs[0].astype(jnp.float32) @ ws[0].astype(jnp.float32))
  s = time_per_call(lambda x, w: x @ w, list(zip(xs, ws)), perturb=0)
  print(f"{name} XLA x@W: {s*1e6:8.2f} us {nbytes/s/1e12:5.2f} TB/s", flush=True)
  splits_opts = (4, 8, 16) if k == 4096 else (5, 9, 15)
  bk_opts = (128, 256) if k == 4096 else (64,)
  for layout, bn, splits, bk, stages, warps in itertools.product(("in_out", "out_in"), (64, 128), splits_opts, bk_opts, (3, 4), (4,)):
    if n % bn: continue
    if (k // splits) % bk: continue
    wl = ws if layout == "in_out" else wts
    f = functools.partial(gemv_shares, layout=layout, bn=bn, bk=bk, splits=splits, num_warps=warps, num_stages=stages)
    try:
      out = jax.jit(lambda x, w: f(x, w).sum(0)[:1])(xs[0], wl[0])
      err = float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref))
      t_k = time_per_call(f, list(zip(xs, wl)), perturb=0)
      t_s = time_per_call(lambda x, w: f(x, w).sum(0)[:1], list(zip(xs, wl)), perturb=0)
      print(f"{name} {layout} bn={bn} splits={splits} bk={bk} st={stages} w={warps}: kernel {t_k*1e6:7.2f} us "
            f"({nbytes/t_k/1e12:4.2f} TB/s) +sum {t_s*1e6:7.2f} us  err {err:.1e}", flush=True)
    except Exception as e:
      print(f"{name} {layout} bn={bn} splits={splits} bk={bk} st={stages}: FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
