"""Batch-1 out projection + bias + residual + the router's partial products in one Pallas kernel,
against XLA's kernels for the same (the product, the add, the router's reduction)."""
import itertools, functools, sys
import jax, jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton
from mxfp4_jax import benchmarking
from mxfp4_jax.benchmarking import time_per_call

def _chain(fn, copies, n, perturb=None):  # benchmarking._chain for tuple outputs (all kept)
  def run(copies, zero):
    token, kept = jnp.zeros((), jnp.float32), []
    for i in range(n):
      args = list(copies[i % len(copies)])
      args[perturb] = args[perturb] + (token * zero).astype(args[perturb].dtype)
      out = jax.lax.optimization_barrier(fn(*args))
      token = sum(jnp.ravel(o)[-1].astype(jnp.float32) for o in jax.tree.leaves(out))
      kept.append(token)
    return jnp.stack(kept)
  jitted = jax.jit(run)
  zero = jnp.zeros((), jnp.float32)
  return lambda copies: jitted(copies, zero)
benchmarking._chain = _chain

INTERPRET = False

def fused(a, w, bo, res, g, wr, *, layout, bn, bk, num_warps, num_stages):
  m, kdim = a.shape
  n = w.shape[1] if layout == "in_out" else w.shape[0]
  e = wr.shape[0]
  chunks = n // bn
  def kernel(a_ref, w_ref, bo_ref, res_ref, g_ref, wr_ref, h_ref, part_ref):
    j = pl.program_id(0)
    c0 = pl.multiple_of(j * bn, bn)
    cols = pl.ds(c0, bn)
    row = lax.broadcasted_iota(jnp.int32, (16,), 0)
    r = jnp.minimum(row, m - 1)
    def body(i, acc):
      k = pl.multiple_of(i * bk, bk)
      x = a_ref[r, pl.ds(k, bk)]
      if layout == "in_out":
        return acc + pltriton.dot(x, w_ref[pl.ds(k, bk), cols])
      return acc + pltriton.dot(x, w_ref[cols, pl.ds(k, bk)], trans_b=True)
    acc = lax.fori_loop(0, kdim // bk, body, jnp.zeros((16, bn), jnp.float32))
    y = acc.astype(jnp.bfloat16) + bo_ref[cols][None, :]
    h = res_ref[r, cols] + y  # [16, bn] bf16
    pltriton.store(h_ref.at[pl.ds(0, 16), cols], h, mask=(row < m)[:, None]) if False else None
    h_ref[r, cols] = h
    hg = h.astype(jnp.float32) * g_ref[cols].astype(jnp.float32)[None, :]
    hi = hg.astype(jnp.bfloat16)
    lo = (hg - hi.astype(jnp.float32)).astype(jnp.bfloat16)
    wrt = wr_ref[:, cols]
    part = pltriton.dot(hi, wrt, trans_b=True) + pltriton.dot(lo, wrt, trans_b=True)  # [16, E]
    part_ref[j, r, :] = part
  return pl.pallas_call(
      kernel,
      out_shape=(jax.ShapeDtypeStruct((m, n), jnp.bfloat16), jax.ShapeDtypeStruct((chunks, m, e), jnp.float32)),
      grid=(chunks,),
      compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages),
      interpret=INTERPRET)(a, w, bo, res, g, wr)

def xla_chain(a, w, bo, res, g, wr):
  h = res + (a @ w + bo)
  prod = (h.astype(jnp.float32) * g.astype(jnp.float32))[:, None, :] * wr.astype(jnp.float32)[None]
  return h, jnp.sum(prod, axis=2)

def main():
  kdim, n, e, m = 4096, 2880, 32, 1
  key = jax.random.PRNGKey(0)
  nbytes = kdim * n * 2
  copies = 8
  mk = lambda i, shape, s=1.0: (s * jax.random.normal(jax.random.fold_in(key, i), shape)).astype(jnp.bfloat16)
  ws = [mk(i, (kdim, n), 0.02) for i in range(copies)]
  wts = [jnp.asarray(w.T) for w in ws]
  a = [mk(100 + i, (m, kdim)) for i in range(copies)]
  bo, res, g, wr = mk(200, (n,)), mk(201, (m, n)), mk(202, (n,)), mk(203, (e, n))
  print(jax.devices()[0].device_kind, flush=True)
  h_ref, l_ref = jax.jit(xla_chain)(a[0], ws[0], bo, res, g, wr)
  t = time_per_call(xla_chain, [(a[i], ws[i], bo, res, g, wr) for i in range(copies)], perturb=0)
  print(f"XLA chain: {t*1e6:7.2f} us", flush=True)
  for layout, bn, bk, st, nw in itertools.product(("out_in", "in_out"), (16, 32), (128, 256, 512), (3, 4, 5), (4,)):
    wl = wts if layout == "out_in" else ws
    f = functools.partial(fused, layout=layout, bn=bn, bk=bk, num_warps=nw, num_stages=st)
    try:
      h, part = jax.jit(f)(a[0], wl[0], bo, res, g, wr)
      dh = float(jnp.max(jnp.abs(h.astype(jnp.float32) - h_ref.astype(jnp.float32))))
      dl = float(jnp.linalg.norm(part.sum(0) - l_ref) / jnp.linalg.norm(l_ref))
      tk = time_per_call(f, [(a[i], wl[i], bo, res, g, wr) for i in range(copies)], perturb=0)
      print(f"{layout} bn={bn} bk={bk} st={st} w={nw}: {tk*1e6:7.2f} us ({nbytes/tk/1e12:4.2f} TB/s)  h maxdiff {dh:.3g} logits rel {dl:.1e}", flush=True)
    except Exception as ex:
      print(f"{layout} bn={bn} bk={bk} st={st} w={nw}: FAILED {type(ex).__name__}: {str(ex)[:300]}", flush=True)
  t = time_per_call(xla_chain, [(a[i], ws[i], bo, res, g, wr) for i in range(copies)], perturb=0)
  print(f"XLA chain again: {t*1e6:7.2f} us", flush=True)

if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "cpu":
    INTERPRET = True
    kdim = 256
    key = jax.random.PRNGKey(0)
    mk = lambda i, shape, s=1.0: (s * jax.random.normal(jax.random.fold_in(key, i), shape)).astype(jnp.bfloat16)
    for m in (1, 3):
      w = mk(1, (kdim, 64), 0.05); a = mk(2, (m, kdim)); bo, res, g, wr = mk(3, (64,)), mk(4, (m, 64)), mk(5, (64,)), mk(6, (32, 64))
      h_ref, l_ref = xla_chain(a, w, bo, res, g, wr)
      for layout in ("in_out", "out_in"):
        h, part = fused(a, w if layout == "in_out" else w.T, bo, res, g, wr, layout=layout, bn=16, bk=128, num_warps=4, num_stages=3)
        print(m, layout, float(jnp.max(jnp.abs(h.astype(jnp.float32) - h_ref.astype(jnp.float32)))), float(jnp.linalg.norm(part.sum(0) - l_ref) / jnp.linalg.norm(l_ref)))
  else:
    main()
