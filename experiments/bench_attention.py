"""Benchmark prefill attention: the Pallas flash kernel (`mxfp4_jax.kernels.flash_attention`)
against the model's jnp path, at GPT-OSS head shapes.

  python -m experiments.bench_attention --config=configs/bench_attention.py

FLOPs count the (query, key) pairs a prompt's causal or sliding mask leaves visible (4 hd per
pair and query head), so the ratio to the bf16 ceiling is that of useful work. Writes
``results.json`` and ``results.csv``; timing: `mxfp4_jax.benchmarking.time_per_call`.
"""

from __future__ import annotations

import csv
import functools

import jax
import jax.numpy as jnp
from absl import app

from experiments import common
from mxfp4_jax import benchmarking
from mxfp4_jax.kernels.flash_attention import flash_attention
from mxfp4_jax.model.gpt_oss import attend

_CONFIG = common.define_config("bench_attention.py")


def visible_pairs(length: int, window: int | None) -> int:
  if window is None:
    return length * (length + 1) // 2
  return sum(min(i + 1, window) for i in range(length))


def _runner(tiling: str, window: int | None):
  if tiling == "xla":
    return lambda q, k, v, pos, sinks: attend(q, k, v, pos, pos, sinks, window, aligned=True)
  block_q, block_k, num_warps, num_stages = (int(n) for n in tiling.split("x"))
  return functools.partial(flash_attention, window=window, block_q=block_q, block_k=block_k,
                           num_warps=num_warps, num_stages=num_stages,
                           interpret=jax.default_backend() != "gpu")


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  key = jax.random.PRNGKey(config.seed)
  _, config.bf16_flops_per_s = common.ceilings(bf16_flops_per_s=config.bf16_flops_per_s)
  kv_heads, group, head_dim = config.kv_heads, config.group, config.head_dim
  results = []
  for length in common.csv_list(config.lengths, int):
    keys = jax.random.split(key, 4)
    q = jax.random.normal(keys[0], (1, length, kv_heads, group, head_dim), jnp.bfloat16)
    k, v = (jax.random.normal(kk, (1, length, kv_heads, head_dim), jnp.bfloat16) for kk in keys[1:3])
    sinks = jax.random.normal(keys[3], (kv_heads, group), jnp.float32)
    pos = jnp.arange(length, dtype=jnp.int32)[None]
    args = (q, k, v, pos, sinks)
    for window in (w or None for w in common.csv_list(config.windows, int)):
      reference = jax.jit(_runner("xla", window))(*args)
      flops = 4 * head_dim * kv_heads * group * visible_pairs(length, window)
      for tiling in common.csv_list(config.tilings):
        fn = _runner(tiling, window)
        error = benchmarking.relative_error(jax.jit(fn)(*args), reference)
        seconds = benchmarking.time_per_call(fn, [args], calls=tuple(config.calls), perturb=0)
        results.append(dict(length=length, window=window or 0, tiling=tiling, ms=seconds * 1e3,
                            tflops=flops / seconds / 1e12,
                            fraction_of_bf16=flops / seconds / config.bf16_flops_per_s,
                            rel_err_vs_xla=error))
        r = results[-1]
        print(f"T={length:>6} window={r['window']:>4} {tiling:>14}: {r['ms']:9.3f} ms "
              f"{r['tflops']:7.1f} TF/s ({r['fraction_of_bf16']:.1%} of bf16) "
              f"rel err vs xla {error:.1e}", flush=True)
  out = common.write_results(config, "bench_attention", results)
  with open(out / "results.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(results[0]))
    writer.writeheader()
    writer.writerows(results)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
