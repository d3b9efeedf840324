"""Benchmark attention at GPT-OSS head shapes: the Pallas prefill kernel
(`mxfp4_jax.kernels.flash_attention`) against the model's jnp path, and the decode kernel
(`decode_attention`) by how many programs share a cache.

  python -m experiments.bench_attention --config=configs/bench_attention.py
  python -m experiments.bench_attention --config.lengths= --config.decode_batches=1,8

Prefill FLOPs count the (query, key) pairs a prompt's causal or sliding mask leaves visible (4 hd
per pair and query head), so the ratio to the bf16 ceiling is that of useful work. Decode reads
the whole cache (full layers: the context in whole key blocks; sliding layers: the window's
ring), rotated over copies that add up to ``decode_rotated_bytes`` (by default
`benchmarking.PAST_L2_BYTES`) so that none sits in L2; the time includes the merge of the
shares and one small update that chains the calls.
Writes ``results.json`` and ``results.csv``; timing: `mxfp4_jax.benchmarking.time_per_call`.
"""

from __future__ import annotations

import csv
import functools
import itertools

import jax
import jax.numpy as jnp
from absl import app

from experiments import common
from mxfp4_jax import benchmarking
from mxfp4_jax.kernels.flash_attention import check_block, decode_attention, flash_attention
from mxfp4_jax.kernels.triton_ops import check_launch
from mxfp4_jax.model.gpt_oss import attend, cache_slots, decode_block

_CONFIG = common.define_config("bench_attention.py")


def visible_pairs(length: int, window: int | None) -> int:
  if window is None:
    return length * (length + 1) // 2
  return sum(min(i + 1, window) for i in range(length))


def _check_block_flag(name: str, block: int) -> None:
  """The kernels' own rule for a size they tile by (`check_block`), as a usage error."""
  try:
    check_block(name, block)
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def check_tilings(text: str) -> list[str]:
  """``--config.tilings`` -> its list, each "xla" or four positive ints joined by x: block
  sizes the kernel takes (`check_block`) and a power-of-two number of warps."""
  tilings = common.csv_list(text)
  for tiling in tilings:
    parts = tiling.split("x")
    if tiling != "xla" and not (len(parts) == 4 and all(p.isdigit() and int(p) for p in parts)):
      raise app.UsageError(f"--config.tilings: {tiling!r} is neither 'xla' nor "
                           "BLOCK_QxBLOCK_KxNUM_WARPSxNUM_STAGES (e.g. 64x64x4x2)")
    if tiling != "xla":
      block_q, block_k, num_warps, num_stages = (int(p) for p in parts)
      _check_block_flag(f"--config.tilings: {tiling}: block_q", block_q)
      _check_block_flag(f"--config.tilings: {tiling}: block_k", block_k)
      try:
        check_launch(num_warps, num_stages)  # the kernels' own rule
      except ValueError as e:
        raise app.UsageError(f"--config.tilings: {tiling}: {e}") from None
  return tilings


def _runner(tiling: str, window: int | None):
  if tiling == "xla":
    return lambda q, k, v, pos, sinks: attend(q, k, v, pos, pos, sinks, window, aligned=True)
  block_q, block_k, num_warps, num_stages = (int(n) for n in tiling.split("x"))
  return functools.partial(flash_attention, window=window, block_q=block_q, block_k=block_k,
                           num_warps=num_warps, num_stages=num_stages,
                           interpret=jax.default_backend() != "gpu")


def bench_decode(config, key) -> list[dict]:
  """decode_attention for each batch, context, window and ``num_programs``: ms and cache GB/s."""
  kv_heads, group, head_dim = config.kv_heads, config.group, config.head_dim
  results = []
  for batch, context, window in itertools.product(
      common.csv_list(config.decode_batches, int), common.csv_list(config.decode_contexts, int),
      [w or None for w in common.csv_list(config.windows, int)]):
    slots = cache_slots(min(window, context) if window else context)
    cache_bytes = 2 * batch * slots * kv_heads * head_dim * 2  # k and v, bf16
    copies = max(2, -(-int(config.decode_rotated_bytes) // cache_bytes))
    keys = jax.random.split(key, 2 * copies + 2)
    q = jax.random.normal(keys[0], (batch, kv_heads, group, head_dim), jnp.bfloat16)
    sinks = jax.random.normal(keys[1], (kv_heads, group), jnp.float32)
    q_pos = jnp.full((batch,), context, jnp.int32)
    # A sliding layer's ring holds the window's last positions (in slot order here: the order
    # does not change the work); a full layer's slots past the context are empty (-1).
    k_pos = jnp.arange(slots, dtype=jnp.int32) + (context - slots if window else 0)
    k_pos = jnp.broadcast_to(jnp.where(k_pos < context, k_pos, -1), (batch, slots))
    kv = lambda k: jax.random.normal(k, (batch, slots, kv_heads, head_dim), jnp.bfloat16)
    args = [(q, kv(keys[2 + 2 * c]), kv(keys[3 + 2 * c]), q_pos, k_pos, sinks)
            for c in range(copies)]
    reference = attend(q[:, None], args[0][1], args[0][2], q_pos[:, None], k_pos, sinks, window)
    for programs in common.csv_list(config.decode_programs, int):
      fn = functools.partial(decode_attention, window=window, block_k=decode_block(slots),
                             num_programs=programs, interpret=jax.default_backend() != "gpu")
      error = benchmarking.relative_error(fn(*args[0]), reference[:, 0])
      seconds = benchmarking.time_per_call(fn, args, calls=tuple(config.calls), perturb=0)
      results.append(dict(batch=batch, context=context, window=window or 0,
                          num_programs=programs, ms=seconds * 1e3,
                          cache_gb_per_s=cache_bytes / seconds / 1e9, rel_err_vs_xla=error))
      print(f"decode B={batch:>3} context={context:>6} window={window or 0:>4} "
            f"num_programs={programs:>4}: {seconds * 1e6:8.1f} us "
            f"{cache_bytes / seconds / 1e9:7.1f} GB/s of cache, rel err vs xla {error:.1e}",
            flush=True)
  return results


MAX_ROTATED_BYTES = 100e9


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  tilings = check_tilings(config.tilings)
  if config.lengths and not tilings:
    raise app.UsageError("--config.tilings is empty: --config.lengths has nothing to time")
  common.positive_pair(config, ("lengths", "decode_batches"))
  # A float field: its type lets NaN and inf through. The caches rotated add up to it on the
  # device, so past a GPU's memory it could only fail there.
  rotated = config.decode_rotated_bytes
  if not 0 <= rotated <= MAX_ROTATED_BYTES:
    raise app.UsageError(f"--config.decode_rotated_bytes must be a byte count from 0 to "
                         f"{MAX_ROTATED_BYTES:.0e}, got {rotated!r}")
  for name in ("decode_contexts", "decode_programs"):
    common.positive(f"--config.{name}", config[name], allow_empty=not config.decode_batches)
  for name in ("kv_heads", "group", "head_dim"):
    common.positive(f"--config.{name}", config[name])
  _check_block_flag("--config.head_dim", config.head_dim)
  common.at_least("--config.windows", config.windows, 0)  # 0: full attention
  common.timing_fields(config)
  key = jax.random.PRNGKey(common.seed("--config.seed", config.seed))
  _, config.bf16_flops_per_s = common.ceilings(bf16_flops_per_s=config.bf16_flops_per_s,
                                               used=("bf16_flops_per_s",))
  kv_heads, group, head_dim = config.kv_heads, config.group, config.head_dim
  results = bench_decode(config, key) if config.decode_batches else []
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
      for tiling in tilings:
        fn = _runner(tiling, window)
        error = benchmarking.relative_error(jax.jit(fn)(*args), reference)
        # The chain's dependency rides on the sinks, which every program reads: on q it was
        # a pass over q of its own before each call (67 MB at 8k).
        seconds = benchmarking.time_per_call(fn, [args], calls=tuple(config.calls), perturb=4)
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
    writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in results for k in r)))
    writer.writeheader()
    writer.writerows(results)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
