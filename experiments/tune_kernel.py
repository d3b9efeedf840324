"""Sweep KernelConfig candidates for the grouped matmul and print the fastest per (shape, P).

  python -m experiments.tune_kernel --config=configs/tune_kernel.py
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics

import jax
from absl import app

from configs.bench_kernel import SHAPES
from experiments import common
from experiments.kernel_problems import (PERTURB, PERTURB_BY_ROW, kernel_call, kernel_groups,
                                         kernel_problem, model_out_dtype, reference_in_chunks,
                                         weight_copies)
from mxfp4_jax import benchmarking
from mxfp4_jax.argcheck import is_int
from mxfp4_jax.kernels import KernelConfig, pick_config
from mxfp4_jax.kernels.tuning import rows_per_expert

_CONFIG = common.define_config("tune_kernel.py")


def copies_to_rotate(shape_name: str, config, num_rows: int) -> int:
  """`weight_copies`, or 2 with ``config.weights_in_l2``: at decode sizes a call's experts then
  mostly stay in L2, which times the kernel reading from L2 instead of HBM."""
  return 2 if config.weights_in_l2 else weight_copies(shape_name, config, num_rows)


def confirm(candidates, seconds_of, rounds: int) -> list[tuple[float, list[float], KernelConfig]]:
  """Each candidate timed ``rounds`` more times, the candidates in turn each round (so that a
  slow spell of the machine falls on all of them) -> (median, times, config), fastest first. A
  sweep's single figure is good to about 7%: the same kernel swept twice ran 0.1541 and 0.1643
  ms (BENCHMARKS.md, twenty-sixth round)."""
  candidates = list(dict.fromkeys(candidates))  # each once, in order
  times = {c: [] for c in candidates}
  for _ in range(rounds):
    for c in candidates:
      times[c].append(seconds_of(c))
  return sorted(((statistics.median(t), t, c) for c, t in times.items()), key=lambda r: r[0])


def _largest_tile(config, shape_name: str, num_rows: int) -> float:
  """Tiles past twice the rows an expert expects are mostly empty; rows one a tile fill 16."""
  num_experts = SHAPES[shape_name][0]
  return 16 if config.row_experts else max(16, 2 * rows_per_expert(num_rows, num_experts))


def _candidates(choices: dict, config, shape_name: str, num_rows: int) -> list[KernelConfig]:
  """The sweep's configs at one shape and P: block_m up to `_largest_tile`, and unroll_split
  only with a split to unroll."""
  m_limit = _largest_tile(config, shape_name, num_rows)
  fields = (dict(zip(choices, values)) for values in itertools.product(*choices.values()))
  return [KernelConfig(**f) for f in fields
          if f["block_m"] <= m_limit and not (f["unroll_split"] and f["k_splits"] == 1)]


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  common.seed("--config.seed", config.seed)
  shapes = common.known_shapes("--config.shapes", common.csv_list(config.shapes), config.top_k)
  rows = common.positive("--config.rows", config.rows)
  common.timing_fields(config)
  common.positive("--config.confirm_top", config.confirm_top)
  if not (is_int(config.confirm_rounds) and config.confirm_rounds >= 0):
    raise app.UsageError("--config.confirm_rounds must be an int >= 0 (0: no confirm pass), got "
                         f"{config.confirm_rounds!r}")
  choices = common.kernel_fields(config, sweep=True)  # every field a list; the sweep's product
  sweeps = {(shape_name, num_rows): _candidates(choices, config, shape_name, num_rows)
            for shape_name, num_rows in itertools.product(shapes, rows)}
  for (shape_name, num_rows), candidates in sweeps.items():
    if not candidates:
      raise app.UsageError(
          f"--config: nothing to sweep at {shape_name} P={num_rows}: every block_m is over "
          f"{_largest_tile(config, shape_name, num_rows):g} there, or unroll_split is on with "
          "k_splits=1 only")
  common.require_gpu("tune_kernel")
  print(f"device: {common.device_description()}")
  key = jax.random.PRNGKey(config.seed)
  results = []
  for (shape_name, num_rows), candidates in sweeps.items():
    num_experts = SHAPES[shape_name][0]
    copies = copies_to_rotate(shape_name, config, num_rows)
    group_sizes, weights, xs, row_weights, activation = kernel_problem(
        key, shape_name, num_rows, copies, config.top_k)
    # row_experts: a decode step's rows, one tile each, no sort (the model's path)
    groups = kernel_groups(group_sizes, num_rows, config.row_experts)
    args = [(x, w, groups, row_weights) for x, w in zip(xs, weights)]
    perturb = PERTURB_BY_ROW if config.row_experts else PERTURB
    reference = reference_in_chunks(xs[0], weights[0], groups, row_weights, activation,
                                    by_row=config.row_experts)

    def timed(cfg: KernelConfig) -> tuple[float, float] | None:
      """(device seconds of one call with ``cfg``, its relative error); None (and why, printed)
      if it fails to compile or is further from the reference than ``max_rel_err``: a fast
      wrong kernel must not win."""
      fn = functools.partial(kernel_call, by_row=config.row_experts, activation=activation,
                             out_dtype=model_out_dtype(activation), backend="pallas", config=cfg)
      try:
        err = benchmarking.relative_error(fn(*args[0]), reference)
        if not err <= config.max_rel_err:
          print(f"  {cfg}: wrong: rel err {err:.2e}", flush=True)
          return None
        return benchmarking.time_per_call(fn, args, calls=tuple(config.calls),
                                          repeats=config.repeats,
                                          perturb=perturb), err
      except Exception as e:  # noqa: BLE001 - a config the compiler rejects is a result too
        print(f"  {cfg}: failed: {common.first_line(e)[:120]}")
        return None

    timings = []
    for cfg in candidates:
      result = timed(cfg)
      if result is not None:
        timings.append((result[0], cfg))
        print(f"  {shape_name} P={num_rows} {cfg}: {result[0] * 1e3:.4f} ms, rel err "
              f"{result[1]:.1e}", flush=True)
    if not timings:  # recorded, and the sweep goes on: the other shapes' results still count
      print(f"NONE {shape_name} P={num_rows}: no candidate ran correctly", flush=True)
      results.append(dict(shape=shape_name, rows=num_rows, best=None, ms=None, all=[]))
      continue
    best_seconds, best = min(timings, key=lambda t: t[0])
    confirmed = []
    if config.confirm_rounds:
      # The sweep's fastest few and the config the kernel picks today, timed again in turn.
      picked = pick_config(num_rows, num_experts, reference.shape[1], weights[0].values.shape[1],
                           one_tile_per_row=config.row_experts)
      fastest = [c for _, c in sorted(timings, key=lambda t: t[0])[:config.confirm_top]]
      confirmed = confirm(fastest + [picked], lambda c: (timed(c) or (math.inf,))[0],
                          config.confirm_rounds)
      for median, times, cfg in confirmed:
        tag = " (picked today)" if cfg == picked else ""
        print(f"CONFIRM {shape_name} P={num_rows}{tag} {cfg}: median {median * 1e3:.4f} ms of "
              + ", ".join(f"{t * 1e3:.4f}" for t in times), flush=True)
      best_seconds, _, best = confirmed[0]
    print(f"BEST {shape_name} P={num_rows}: {best} {best_seconds * 1e3:.4f} ms", flush=True)
    results.append(dict(shape=shape_name, rows=num_rows, best=best.__dict__,
                        ms=best_seconds * 1e3,
                        all=[dict(ms=s * 1e3, **c.__dict__) for s, c in timings],
                        confirmed=[dict(ms=m * 1e3, runs_ms=[t * 1e3 for t in times],
                                        **c.__dict__) for m, times, c in confirmed]))
  out = common.write_results(config, "tune_kernel", results)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
