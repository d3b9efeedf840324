"""Grouped-matmul problems at GPT-OSS shapes, shared by the kernel benchmark and the tuning sweep."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from configs.bench_kernel import SHAPES
from mxfp4_jax import benchmarking
from mxfp4_jax.kernels import grouped_matmul
from mxfp4_jax.kernels.reference import expert_of_row
from mxfp4_jax.kernels.schedule import clip_group_sizes
from mxfp4_jax.kernels.tuning import one_row_tiles_suit
from mxfp4_jax.mxfp4.format import BITS_PER_WEIGHT
from mxfp4_jax.mxfp4.layout import random_packed


def _rotated_copies(touched_bytes: float, copy_bytes: float, config, at_least: int = 2,
                    at_most: int | None = None) -> int:
  """Copies whose touched bytes add up to `benchmarking.PAST_L2_BYTES` (at P=1 one expert of
  one copy is 4-9 MB: 8 copies of it would be read from L2) and at least ``at_least``, at most
  ``at_most`` and as many as ``config.max_weight_bytes`` holds; never fewer than 2."""
  past_l2 = benchmarking.PAST_L2_BYTES
  wanted = max(at_least, math.ceil(past_l2 / touched_bytes))
  if at_most is not None:
    wanted = min(wanted, at_most)
  copies = int(max(2, min(wanted, config.max_weight_bytes // copy_bytes)))
  if copies * touched_bytes < past_l2:
    print(f"weights: {copies} copies touch {copies * touched_bytes / 1e6:.0f} MB a rotation, "
          f"under the {past_l2 / 1e6:.0f} MB that keeps them out of L2 (capped by "
          "--config.max_weight_bytes or by the copies there are): the times may read from L2")
  return copies


def weight_copies(shape_name: str, config, num_rows: int) -> int:
  """Weight copies to rotate: at least config.weight_copies, more when the experts ``num_rows``
  rows touch are too few bytes to leave L2, fewer when all copies would pass the byte cap."""
  num_experts, k, n, _ = SHAPES[shape_name]
  expert = k * n * BITS_PER_WEIGHT / 8
  experts_hit = min(num_rows, benchmarking.expected_experts_hit(
      num_experts, config.top_k, -(-num_rows // config.top_k)))  # P = 1: one row, one expert
  return _rotated_copies(expert * experts_hit, num_experts * expert, config,
                         at_least=config.weight_copies)


def dense_copies(shape_name: str, config, active_experts: int, available: int) -> int:
  """bf16 copies of the weights for the XLA baselines, by the same rule, at most ``available``
  (the MXFP4 copies they are made from)."""
  num_experts, k, n, _ = SHAPES[shape_name]
  expert = k * n * 2
  return _rotated_copies(active_experts * expert, num_experts * expert, config, at_most=available)


def model_out_dtype(activation):
  """The output dtype the model asks of the call: float32 from down (its rows are weighted and
  summed over each token's experts before rounding), bf16 from gate_up (down's input)."""
  return jnp.bfloat16 if activation else jnp.float32


# How a benchmark lays out a problem's rows (its ``row_experts`` flag): "model" as the model's MoE
# does (one kernel tile a row, no sort, while P <= E / 2: a decode step's few rows), "always" or
# "never".
ONE_ROW_TILES = ("model", "always", "never")


def one_row_tiles(setting: str, num_rows: int, num_experts: int) -> bool:
  """Whether P = ``num_rows`` rows run one tile each under ``setting`` (`ONE_ROW_TILES`); "model"
  is `GptOssConfig.moe_one_row_tiles` with P token-expert rows."""
  return setting == "always" or (setting == "model" and one_row_tiles_suit(num_rows, num_experts))


def kernel_groups(group_sizes, num_rows: int, by_row: bool):
  """What `kernel_call` and `reference_in_chunks` take as ``groups``: the group sizes of rows
  sorted by expert, or with ``by_row`` each row's expert."""
  return expert_of_row(group_sizes, num_rows) if by_row else group_sizes


def kernel_call(x, w, groups, row_weights, *, by_row: bool, **kwargs):
  """`grouped_matmul` on ``groups`` (`kernel_groups`): the group sizes (rows sorted by expert),
  or with ``by_row`` each row's expert (one tile a row)."""
  if by_row:
    return grouped_matmul(x, w, None, row_weights, row_experts=groups, **kwargs)
  return grouped_matmul(x, w, groups, row_weights, **kwargs)


# The argument of (x, w, group_sizes, row_weights) that carries each timed call's dependency on
# the previous one. Group sizes feed the tile schedule and so every kernel launch; row weights,
# though smaller, feed only the epilogue after a split-K kernel, and perturbing them let XLA merge
# the repeated kernel calls of a chain longer than the copies (times far past the HBM roofline).
# Each row's expert cannot carry it (a perturbed expert is another problem), so one-row tiles
# perturb x: an elementwise pass over P x K values, a small kernel of its own in each call.
PERTURB = 2
PERTURB_BY_ROW = 0


def kernel_problem(key, shape_name: str, num_rows: int, copies: int, top_k: int):
  """(group_sizes, weight copies, x copies, row_weights or None, activation) on the device."""
  num_experts, k, n, activation = SHAPES[shape_name]
  k_route, k_x, k_w, k_rw = jax.random.split(key, 4)
  group_sizes = benchmarking.random_routing(k_route, num_rows, num_experts, top_k)
  weights = [random_packed(kw, num_experts, k, n, swiglu_halves=activation == "swiglu")
             for kw in jax.random.split(k_w, copies)]
  xs = [jax.random.normal(kx, (num_rows, k), jnp.bfloat16) for kx in jax.random.split(k_x, copies)]
  row_weights = None if activation else jax.random.uniform(k_rw, (num_rows,), jnp.float32)
  return group_sizes, weights, xs, row_weights, activation


# Rows of the float32 reference computed at once: XLA's float32 ragged_dot of all rows of 120b
# gate_up at P = 16384 asks for a 22.5 GiB intermediate, more than an 80 GB GPU has beside the
# weight copies.
REFERENCE_CHUNK_ROWS = 4096


def reference_in_chunks(x, w, groups, row_weights, activation, *, by_row: bool = False,
                        chunk: int = REFERENCE_CHUNK_ROWS):
  """The float32 reference (``backend="reference"``) of every row, ``chunk`` rows at a time.
  ``groups`` and ``by_row`` as `kernel_call` takes them. Rows sorted by expert stay sorted in a
  chunk, whose group sizes are the groups' overlaps with it: their rows up to the chunk's end
  less their rows up to its start."""
  group_sizes, row_experts = (None, groups) if by_row else (groups, None)
  num_rows = x.shape[0]
  parts = []
  for lo in range(0, max(num_rows, 1), chunk):
    rows = slice(lo, min(lo + chunk, num_rows))
    sizes = None if group_sizes is None else (clip_group_sizes(group_sizes, rows.stop)
                                              - clip_group_sizes(group_sizes, lo))
    part = lambda a: None if a is None else a[rows]
    parts.append(grouped_matmul(x[rows].astype(jnp.float32), w, sizes, part(row_weights),
                                row_experts=part(row_experts), activation=activation,
                                backend="reference"))
  return jnp.concatenate(parts)
