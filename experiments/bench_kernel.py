"""Benchmark the MXFP4 grouped matmul against XLA's bf16 ragged_dot and dense matmuls.

  python -m experiments.bench_kernel --config=configs/bench_kernel.py

Writes ``results.json``, ``results.csv`` and ``roofline.png`` to the output folder and prints a
table. Timing: `mxfp4_jax.benchmarking.time_per_call` (device time, dispatch cancelled, weight
copies rotated past L2). Roofline bytes count the MXFP4 weights of the experts that get rows
(4.25 bits per weight) plus the activations read and written. Rows run as the model's MoE runs
them (``--config.row_experts=model``): one kernel tile a row up to P = E / 2, sorted by expert
beyond; each timed call then also holds one elementwise pass over its x or group sizes (the
dependency on the call before).
"""

from __future__ import annotations

import csv

import jax
import jax.numpy as jnp
from absl import app, logging

from configs.bench_kernel import SHAPES
from experiments import common
from experiments.kernel_problems import (ONE_ROW_TILES, PERTURB, PERTURB_BY_ROW, dense_copies,
                                         kernel_call, kernel_groups, kernel_problem,
                                         model_out_dtype, one_row_tiles, reference_in_chunks,
                                         weight_copies)
from mxfp4_jax import benchmarking
from mxfp4_jax.device_memory import out_of_device_memory
from mxfp4_jax.kernels import grouped_matmul, tuning
from mxfp4_jax.mxfp4.layout import dequantize_packed, random_packed

_CONFIG = common.define_config("bench_kernel.py")
BASELINES = ("ragged_dot", "dense")  # XLA bf16 implementations --config.baselines may name


def _row_groups(config, group_sizes, num_rows: int, num_experts: int):
  """(by_row, groups): whether the rows run one tile each (`one_row_tiles` of
  ``config.row_experts``), and their `kernel_groups`."""
  by_row = one_row_tiles(config.row_experts, num_rows, num_experts)
  return by_row, kernel_groups(group_sizes, num_rows, by_row)


def smoke(config) -> None:
  """One kernel call on a small shape, checked against the float32 reference."""
  key = jax.random.PRNGKey(config.seed)
  w = random_packed(key, 3, 256, 128, swiglu_halves=True)
  x = jax.random.normal(key, (40, 256), jnp.bfloat16)
  group_sizes = jnp.array([17, 0, 20], jnp.int32)
  out = grouped_matmul(x, w, group_sizes, activation="swiglu", out_dtype=jnp.float32,
                       backend="pallas", interpret=jax.default_backend() != "gpu")
  ref = grouped_matmul(x.astype(jnp.float32), w, group_sizes, activation="swiglu",
                       backend="reference")
  err = benchmarking.relative_error(out, ref)
  print(f"eager smoke on {common.device_description()}: out {out.shape}, rel err {err:.2e}, "
        f"tail rows zero: {bool(jnp.all(out[37:] == 0))}")


def once(config) -> None:
  """One kernel call per (shape, P), nothing else: the mode to run under ``ncu``."""
  key = jax.random.PRNGKey(config.seed)
  options = common.kernel_options(config.kernel_options)
  for shape_name in common.csv_list(config.shapes):
    for num_rows in common.csv_list(config.rows, int):
      group_sizes, weights, xs, row_weights, activation = kernel_problem(
          key, shape_name, num_rows, 1, config.top_k)
      by_row, groups = _row_groups(config, group_sizes, num_rows, SHAPES[shape_name][0])
      with tuning.overridden(**options):  # the tuned config for this P, some fields replaced
        out = kernel_call(xs[0], weights[0], groups, row_weights, by_row=by_row,
                          activation=activation, out_dtype=model_out_dtype(activation),
                          backend="pallas")
      print(f"once: {shape_name} P={num_rows} -> {out.shape}, finite: "
            f"{bool(jnp.all(jnp.isfinite(out)))}")


class WrongKernel(Exception):
  """A kernel output past ``--config.max_rel_err``: the run stops there."""


def bench(config, results: list[dict]) -> None:
  """Appends a row to ``results`` for each shape and P as it is measured (so that the rows
  before a `WrongKernel` are kept)."""
  rows_list = common.csv_list(config.rows, int)
  options = common.kernel_options(config.kernel_options)
  key = jax.random.PRNGKey(config.seed)
  for shape_name in common.csv_list(config.shapes):
    num_experts, k, n, activation = SHAPES[shape_name]
    for num_rows in rows_list:
      key, sub = jax.random.split(key)
      copies = weight_copies(shape_name, config, num_rows)
      group_sizes, weights, xs, row_weights, activation = kernel_problem(
          sub, shape_name, num_rows, copies, config.top_k)
      active = int(jnp.sum(group_sizes > 0))
      out_cols = n // 2 if activation else n
      flops = 2 * num_rows * k * n
      out_dtype = model_out_dtype(activation)
      act_bytes = num_rows * k * 2 + num_rows * out_cols * jnp.dtype(out_dtype).itemsize

      by_row, groups = _row_groups(config, group_sizes, num_rows, num_experts)

      def kernel(x, w, groups, row_weights):
        with tuning.overridden(**options):  # the tuned config for this P, some fields replaced
          return kernel_call(x, w, groups, row_weights, by_row=by_row, activation=activation,
                             out_dtype=out_dtype, backend="pallas")
      args = [(x, w, groups, row_weights) for x, w in zip(xs, weights)]
      ref = reference_in_chunks(xs[0], weights[0], groups, row_weights, activation,
                                by_row=by_row)
      rel_err = benchmarking.relative_error(kernel(*args[0]), ref)
      del ref
      if not rel_err <= config.max_rel_err:  # a fast wrong kernel gets no figures
        raise WrongKernel(f"{shape_name} P={num_rows}: the kernel is {rel_err:.2e} from the "
                          f"float32 reference, more than --config.max_rel_err="
                          f"{config.max_rel_err}")

      row = dict(shape=shape_name, rows=num_rows, active_experts=active, copies=copies,
                 one_row_tiles=by_row, rel_err=rel_err, kernel_options=config.kernel_options)
      seconds = benchmarking.time_per_call(kernel, args, calls=tuple(config.calls),
                                           repeats=config.repeats,
                                           perturb=PERTURB_BY_ROW if by_row else PERTURB)
      if config.profile_dir:  # a few more kernel calls, traced, after the timing
        with jax.profiler.trace(f"{config.profile_dir}/{shape_name}_P{num_rows}",
                                create_perfetto_trace=True):
          for x, w in zip(xs[:3], weights[:3]):
            jax.block_until_ready(kernel(x, w, groups, row_weights))
      weight_bytes = active * weights[0].expert_nbytes()
      row.update(_rates("mxfp4", seconds, weight_bytes + act_bytes, flops, config))

      baselines = common.csv_list(config.baselines)
      if baselines:
        bf16_copies = dense_copies(shape_name, config, active, len(weights))
        dense = [dequantize_packed(w, jnp.bfloat16) for w in weights[:bf16_copies]]
        row.update(dense_copies=bf16_copies)
        weights_bf16 = active * k * n * 2
        if "ragged_dot" in baselines:  # x in, all N columns out (no SwiGLU fused)
          ragged = lambda x, w, g: jax.lax.ragged_dot(x, w, g)
          s = _baseline_seconds(row, "ragged_dot", ragged,
                                [(x, w, group_sizes) for x, w in zip(xs, dense)], config,
                                perturb=2)
          ragged_bytes = weights_bf16 + num_rows * (k + n) * 2
          if s is not None:
            row.update(_rates("ragged_dot", s, ragged_bytes, flops, config))
        if "dense" in baselines:
          m = int(jnp.max(group_sizes))  # every active expert padded to the largest group
          per_expert = [(jax.random.normal(jax.random.fold_in(sub, i), (active, m, k), jnp.bfloat16),
                         w[:active]) for i, w in enumerate(dense)]
          batched = lambda x, w: jnp.einsum("amk,akn->amn", x, w)
          # The dependency between calls rides on x: one extra elementwise pass over x per call.
          s = _baseline_seconds(row, "dense", batched, per_expert, config, perturb=0)
          dense_bytes = weights_bf16 + active * m * (k + n) * 2  # padded rows in and out
          if s is not None:
            row.update(_rates("dense", s, dense_bytes, 2 * active * m * k * n, config))
          del per_expert
        del dense
      del args, weights, xs  # before the next P allocates its copies
      logging.info("%s", row)
      print(_format_row(row), flush=True)
      results.append(row)


def _baseline_seconds(row: dict, name: str, fn, args, config, **kwargs) -> float | None:
  """Seconds a call of an XLA baseline, or None with ``row[name + "_error"]`` set when XLA runs
  out of device memory for it (as XLA's float32 ragged_dot did for the reference of 120b at
  P = 16384 on an 80 GB GPU, all rows at once): a baseline that does not fit ends no run."""
  try:
    return benchmarking.time_per_call(fn, args, calls=tuple(config.calls),
                                      repeats=config.repeats, **kwargs)
  except jax.errors.JaxRuntimeError as e:
    if not out_of_device_memory(e):
      raise
    row[f"{name}_error"] = "out of device memory"
    logging.warning("%s baseline out of device memory: %s", name, common.first_line(e))
    return None


def _rates(prefix: str, seconds: float, nbytes: float, flops: float, config) -> dict:
  return {
      f"{prefix}_ms": seconds * 1e3,
      f"{prefix}_tb_per_s": nbytes / seconds / 1e12,
      f"{prefix}_tflop_per_s": flops / seconds / 1e12,
      f"{prefix}_hbm_roofline": nbytes / config.hbm_bytes_per_s / seconds,
      f"{prefix}_tc_roofline": flops / config.bf16_flops_per_s / seconds,
  }


def _format_row(row: dict) -> str:
  tiles = "row tiles" if row.get("one_row_tiles") else "sorted"
  text = (f"{row['shape']:>13} P={row['rows']:>6} E_act={row['active_experts']:>3} {tiles:>9} "
          f"err={row['rel_err']:.1e} | mxfp4 {row['mxfp4_ms']:8.4f} ms "
          f"{row['mxfp4_tb_per_s']:5.2f} TB/s {row['mxfp4_tflop_per_s']:6.1f} TF/s "
          f"hbm {row['mxfp4_hbm_roofline']:4.0%} tc {row['mxfp4_tc_roofline']:4.0%}")
  for base in BASELINES:
    if f"{base}_ms" in row:
      text += f" | {base} {row[f'{base}_ms']:8.4f} ms (x{row[f'{base}_ms'] / row['mxfp4_ms']:.1f})"
    elif f"{base}_error" in row:
      text += f" | {base} {row[f'{base}_error']}"
  return text


def _plot(results: list[dict], path) -> None:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for shape in sorted({r["shape"] for r in results}):
    rs = [r for r in results if r["shape"] == shape]
    roof = [max(r["mxfp4_hbm_roofline"], r["mxfp4_tc_roofline"]) for r in rs]
    ax.plot([r["rows"] for r in rs], roof, marker="o", label=f"{shape} MXFP4 kernel")
    timed = [r for r in rs if "ragged_dot_ms" in r]
    if timed:
      ax.plot([r["rows"] for r in timed],
              [max(r["ragged_dot_hbm_roofline"], r["ragged_dot_tc_roofline"]) for r in timed],
              ls="--", marker="x", label=f"{shape} XLA ragged_dot bf16")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("token-expert rows P")
  ax.set_ylabel("fraction of roofline (max of HBM, tensor core)")
  ax.set_ylim(0, 1.05)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  common.seed("--config.seed", config.seed)
  if config.mode not in ("bench", "eager_smoke", "once"):
    raise app.UsageError(
        f"--config.mode must be 'bench', 'eager_smoke' or 'once', got {config.mode!r}")
  if config.mode == "eager_smoke":  # interpret mode off a GPU
    smoke(config)
    return
  common.known_shapes("--config.shapes", common.csv_list(config.shapes), config.top_k)
  common.positive("--config.rows", config.rows)
  common.timing_fields(config)
  common.kernel_options(config.kernel_options)
  if config.row_experts not in ONE_ROW_TILES:
    raise app.UsageError(f"--config.row_experts must be one of {', '.join(ONE_ROW_TILES)}, got "
                         f"{config.row_experts!r}")
  unknown = set(common.csv_list(config.baselines)) - set(BASELINES)
  if unknown:
    raise app.UsageError(f"--config.baselines: {sorted(unknown)[0]!r} is not a baseline; known: "
                         f"{', '.join(BASELINES)}")
  common.require_gpu(f"bench_kernel --config.mode={config.mode}")
  if config.mode == "once":
    once(config)
    return
  print(f"device: {common.device_description()}")
  config.hbm_bytes_per_s, config.bf16_flops_per_s = common.ceilings(config.hbm_bytes_per_s,
                                                                    config.bf16_flops_per_s)
  results, wrong = [], None
  try:
    bench(config, results)
  except WrongKernel as e:
    wrong = e
  out = common.write_results(config, "bench_kernel", results)
  with open(out / "results.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=sorted({k for r in results for k in r}))
    writer.writeheader()
    writer.writerows(results)
  if config.plot and results:
    _plot(results, out / "roofline.png")
  print(f"wrote {out}")
  if wrong is not None:
    raise SystemExit(f"bench_kernel: {wrong} (the {len(results)} rows before it: {out})")


if __name__ == "__main__":
  app.run(main)
