"""Batch-M dense projections: W[in, out] (x @ W) against W[out, in] (x @ W.T), XLA's kernels."""
import re, sys
import jax, jax.numpy as jnp
from mxfp4_jax.benchmarking import time_per_call

SHAPES = {"qkv": (2880, 5120), "out": (4096, 2880), "unembed_slice": (2880, 25136)}
key = jax.random.PRNGKey(0)
print(jax.devices()[0].device_kind, flush=True)
for name, (k, n) in SHAPES.items():
  nbytes = k * n * 2
  copies = max(4, -(-int(200e6) // nbytes))
  ws = [jax.random.normal(jax.random.fold_in(key, i), (k, n), jnp.bfloat16) for i in range(copies)]
  wts = [jnp.asarray(w.T) for w in ws]
  for m in (1, 8, 64):
    xs = [jax.random.normal(jax.random.fold_in(key, 100 + i), (m, k), jnp.bfloat16) for i in range(copies)]
    res = {}
    for form, fn, wl in (("in_out", lambda x, w: x @ w, ws),
                         ("out_in", lambda x, w: jnp.einsum("mk,nk->mn", x, w), wts)):
      hlo = jax.jit(fn).lower(xs[0], wl[0]).compile().as_text()
      kinds = sorted(set(re.findall(r'custom_call_target="([^"]+)"', hlo)) |
                     set(re.findall(r'"kind":"(__triton[^"]*)"', hlo)))
      s = time_per_call(fn, list(zip(xs, wl)), perturb=0)
      res[form] = s
      print(f"{name:14s} M={m:3d} {form}: {s*1e6:8.2f} us  {nbytes/s/1e12:5.2f} TB/s  {kinds}", flush=True)
    print(f"{name:14s} M={m:3d} out_in/in_out time ratio {res['out_in']/res['in_out']:.3f}", flush=True)
