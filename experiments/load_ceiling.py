"""The decode-size grouped matmul's reads alone: how fast can its grid load its bytes?

  python -m experiments.load_ceiling --config=configs/load_ceiling.py

A Pallas kernel with the grouped matmul's grid at one tile a row (rows x column tiles x K
splits) reads exactly the packed bytes and scales that each of its programs reads, every load
issued up front, and only XORs them together: no decode, no dot, no barrier. Its time is the
floor that the access pattern and a kernel launch of that many programs set; the grouped
matmul on the same rows and weight copies runs beside it (its time includes the split-K sum).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from absl import app
from jax import lax
from jax.experimental import pallas as pl

from configs.bench_kernel import SHAPES
from experiments import common
from experiments.kernel_problems import kernel_problem, model_out_dtype, weight_copies
from mxfp4_jax import benchmarking
from mxfp4_jax.kernels import grouped_matmul
from mxfp4_jax.kernels.reference import expert_of_row
from mxfp4_jax.kernels.tuning import pick_config
from mxfp4_jax.mxfp4.layout import K_TILE, PackedMXFP4

_CONFIG = common.define_config("load_ceiling.py")


def _xor_kernel(experts_ref, words_ref, scales_ref, out_ref, *, block_n: int, per_split: int,
                weight_rows: tuple[int, ...]):
  expert = experts_ref[pl.program_id(0)]
  col0 = pl.program_id(1) * block_n
  first = pl.program_id(2) * per_split
  loads = []
  for kt in range(per_split):  # straight-line: every load before the first XOR uses it
    for offset in weight_rows:
      rows = pl.ds(col0 + offset, block_n)
      loads.append(words_ref[expert, first + kt, rows, :])  # [block_n, 8] uint32
      for half in range(2):
        loads.append(scales_ref[expert, 2 * (first + kt) + half, rows].astype(jnp.uint32)[:, None])
  out_ref[pl.program_id(0), pl.program_id(1), pl.program_id(2)] = functools.reduce(
      jnp.bitwise_xor, loads[1:], loads[0])


def byte_words(w: PackedMXFP4) -> jax.Array:
  """The packed bytes [E, K tiles, N, 32] as uint32 words [E, K tiles, N, 8] (a bitcast)."""
  return lax.bitcast_convert_type(w.values.reshape(*w.values.shape[:-1], 8, 4), jnp.uint32)


@functools.partial(jax.jit, static_argnames=("block_n", "k_splits", "swiglu", "interpret"))
def xor_reads(row_experts, words, scales, *, block_n: int, k_splits: int, swiglu: bool,
              interpret: bool = False):
  """[P, column tiles, K splits, block_n, 8] uint32: for row p, column tile and split, the XOR
  of the words and scales that the grouped matmul's program reads (both halves' rows with
  ``swiglu``)."""
  _, k_tiles, n, _ = words.shape
  out_cols = n // 2 if swiglu else n
  if out_cols % block_n or k_tiles % k_splits:
    raise ValueError(f"load_ceiling: block_n={block_n} must divide {out_cols} output columns and "
                     f"k_splits={k_splits} the {k_tiles} K tiles")
  kernel = functools.partial(_xor_kernel, block_n=block_n, per_split=k_tiles // k_splits,
                             weight_rows=(0, out_cols) if swiglu else (0,))
  rows = row_experts.shape[0]
  return pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((rows, out_cols // block_n, k_splits, block_n, 8),
                                     jnp.uint32),
      grid=(rows, out_cols // block_n, k_splits),
      interpret=interpret,
      name="xor_reads",
  )(row_experts, words, scales)


def _measure(shape_name: str, config) -> list[dict]:
  """The grouped matmul and `xor_reads` at each split count, on the same rows and copies."""
  num_experts, _, n, activation = SHAPES[shape_name]
  rows = config.rows
  copies = weight_copies(shape_name, config, rows)
  group_sizes, weights, xs, row_weights, _ = kernel_problem(
      jax.random.PRNGKey(config.seed), shape_name, rows, copies, config.top_k)
  row_experts = expert_of_row(group_sizes, rows)
  swiglu = activation == "swiglu"
  cfg = pick_config(rows, num_experts, n // 2 if swiglu else n, weights[0].values.shape[1],
                    one_tile_per_row=True)
  experts_read = len(set(row_experts.tolist()))
  line = dict(shape=shape_name, rows=rows, bytes=experts_read * (
      weights[0].values[0].size + weights[0].scales[0].size))
  timing = dict(calls=tuple(config.calls), repeats=config.repeats, perturb=0)
  matmul = functools.partial(grouped_matmul, activation=activation, backend="pallas", config=cfg,
                             out_dtype=model_out_dtype(activation))
  seconds = benchmarking.time_per_call(
      lambda x, w, e, rw: matmul(x, w, None, rw, row_experts=e),
      [(x, w, row_experts, row_weights) for x, w in zip(xs, weights)], **timing)
  out = [dict(line, kernel="grouped_matmul", k_splits=cfg.k_splits, ms=seconds * 1e3)]
  words = [(row_experts, byte_words(w), w.scales) for w in weights]
  for splits in common.csv_list(config.k_splits, int):
    read = functools.partial(xor_reads, block_n=cfg.block_n, k_splits=splits, swiglu=swiglu)
    out.append(dict(line, kernel="xor_reads", k_splits=splits,
                    ms=benchmarking.time_per_call(read, words, **timing) * 1e3))
  return out


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  common.seed("--config.seed", config.seed)
  shapes = common.known_shapes("--config.shapes", common.csv_list(config.shapes), config.top_k)
  common.positive("--config.rows", config.rows)
  common.timing_fields(config)
  for splits in common.positive("--config.k_splits", config.k_splits):
    for shape_name in shapes:  # xor_reads's straight runs of equal length
      if (SHAPES[shape_name][1] // K_TILE) % splits:
        raise app.UsageError(f"--config.k_splits: {splits} does not divide {shape_name}'s "
                             f"{SHAPES[shape_name][1] // K_TILE} K tiles")
  common.require_gpu("load_ceiling")
  print(f"device: {common.device_description()}")
  results = []
  for shape_name in shapes:
    measured = _measure(shape_name, config)
    for r in measured:
      print(f"{shape_name} P={r['rows']} {r['kernel']:>14} k_splits={r['k_splits']:>2}: "
            f"{r['ms']:.4f} ms, {r['bytes'] / r['ms'] / 1e9:.2f} TB/s of "
            f"{r['bytes'] / 1e6:.1f} MB", flush=True)
    results += measured
  out = common.write_results(config, "load_ceiling", results)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
