"""Sweep KernelConfig candidates for the grouped matmul and print the fastest per (shape, P).

  python -m experiments.tune_kernel --config=configs/tune_kernel.py
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
from absl import app

from configs.bench_kernel import SHAPES
from experiments import common
from experiments.kernel_problems import (PERTURB, kernel_problem, reference_in_chunks,
                                         weight_copies)
from mxfp4_jax import benchmarking
from mxfp4_jax.kernels import KernelConfig, grouped_matmul
from mxfp4_jax.kernels.reference import expert_of_row
from mxfp4_jax.kernels.tuning import rows_per_expert

_CONFIG = common.define_config("tune_kernel.py")


def _kernel(x, w, groups, row_weights, *, by_row: bool, **kwargs):
  """``groups``: the group sizes, or with ``by_row`` each row's expert."""
  if by_row:
    return grouped_matmul(x, w, None, row_weights, row_experts=groups, **kwargs)
  return grouped_matmul(x, w, groups, row_weights, **kwargs)


def copies_to_rotate(shape_name: str, config, num_rows: int) -> int:
  """`weight_copies`, or 2 with ``config.weights_in_l2``: at decode sizes a call's experts then
  mostly stay in L2, which times the kernel reading from L2 instead of HBM."""
  return 2 if config.weights_in_l2 else weight_copies(shape_name, config, num_rows)


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  print(f"device: {common.device_description()}")
  key = jax.random.PRNGKey(config.seed)
  results = []
  for shape_name, num_rows in itertools.product(common.csv_list(config.shapes),
                                                common.csv_list(config.rows, int)):
    num_experts = SHAPES[shape_name][0]
    copies = copies_to_rotate(shape_name, config, num_rows)
    group_sizes, weights, xs, row_weights, activation = kernel_problem(
        key, shape_name, num_rows, copies, config.top_k)
    row_experts = None
    if config.row_experts:  # a decode step's rows: one tile each, no sort (the model's path)
      row_experts = expert_of_row(group_sizes, num_rows)
      group_sizes = None
    args = [(x, w, group_sizes if row_experts is None else row_experts, row_weights)
            for x, w in zip(xs, weights)]
    m_limit = max(16, 2 * rows_per_expert(num_rows, num_experts))
    reference = reference_in_chunks(xs[0], weights[0], group_sizes, row_weights, activation,
                                    row_experts)
    timings = []
    # Every KernelConfig field is a comma list in the config; the sweep is their product.
    fields = dataclasses.fields(KernelConfig)
    choices = [common.csv_list(config[f.name], common.kernel_field_cast(f.type)) for f in fields]
    for values in itertools.product(*choices):
      cfg_fields = dict(zip((f.name for f in fields), values))
      if cfg_fields["block_m"] > m_limit or (cfg_fields["unroll_split"]
                                             and cfg_fields["k_splits"] == 1):
        continue  # the latter: no split to unroll
      cfg = KernelConfig(**cfg_fields)
      fn = functools.partial(_kernel, by_row=config.row_experts, activation=activation,
                             backend="pallas", config=cfg)
      try:
        err = benchmarking.relative_error(fn(*args[0]), reference)
        if not err <= config.max_rel_err:  # a fast wrong kernel must not win
          print(f"  {cfg}: wrong: rel err {err:.2e}", flush=True)
          continue
        seconds = benchmarking.time_per_call(fn, args, calls=tuple(config.calls),
                                             repeats=config.repeats,
                                             perturb=0 if config.row_experts else PERTURB)
      except Exception as e:  # noqa: BLE001 - a config the compiler rejects is a result too
        print(f"  {cfg}: failed: {str(e).splitlines()[0][:120]}")
        continue
      timings.append((seconds, cfg))
      print(f"  {shape_name} P={num_rows} {cfg}: {seconds * 1e3:.4f} ms, rel err {err:.1e}",
            flush=True)
    if not timings:  # recorded, and the sweep goes on: the other shapes' results still count
      print(f"NONE {shape_name} P={num_rows}: no candidate ran correctly", flush=True)
      results.append(dict(shape=shape_name, rows=num_rows, best=None, ms=None, all=[]))
      continue
    best_seconds, best = min(timings, key=lambda t: t[0])
    print(f"BEST {shape_name} P={num_rows}: {best} {best_seconds * 1e3:.4f} ms", flush=True)
    results.append(dict(shape=shape_name, rows=num_rows, best=best.__dict__,
                        ms=best_seconds * 1e3,
                        all=[dict(ms=s * 1e3, **c.__dict__) for s, c in timings]))
  out = common.write_results(config, "tune_kernel", results)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
