"""Static-size tile schedule for ragged groups (the Triton lowering has no scalar prefetch).

Rows ``[P, K]`` are sorted by expert; ``group_sizes[e]`` rows belong to expert ``e``, and the rows
past ``sum(group_sizes)`` form one more "tail" group whose output is zero. Each group is cut into
tiles of at most ``block_m`` rows; a tile never spans two groups. With n <= min(E + 1, P) groups
that have rows, the tiles number at most ``n + (P - n) // block_m`` (each group's last tile may be
partial), a static bound, so the grid is static and programs past the real tile count exit at
once. Decode rows touch few experts: P = 4 rows need at most 4 tiles, not one per expert.

A tile reads the ``block_m`` rows starting at ``window`` and writes only rows in ``[start, end)``;
``window = min(start, R - block_m)``, with R >= max(block_m, P) (the output's rows), keeps every
tile inside R rows; where x has fewer (P < block_m), the kernel clamps its reads to x's rows.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mxfp4_jax.argcheck import is_concrete


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TileSchedule:
  group: jax.Array  # [T] int32: expert index; E or more: the tail group or past the last tile
  start: jax.Array  # [T] int32: first row the tile writes
  end: jax.Array  # [T] int32: one past the last row the tile writes (== start when empty)
  window: jax.Array  # [T] int32: first row the tile reads


# Rows from which `sort_by_expert` counts rather than sorts. H200, 20b, against XLA's sort: the
# 1k prefill (P = 4096) gained 2.5%, batch-256 decode (P = 1024) 18,818-18,847 tok/s against
# 18,806-18,808, batch-64 decode (P = 256) lost 1.5% (7,727-7,729 against 7,848); BENCHMARKS.md,
# sixteenth and seventeenth rounds.
COUNTING_SORT_MIN_ROWS = 1024


def check_experts_in_range(experts: jax.Array, num_experts: int, name: str) -> None:
  """Expert ids outside ``[0, E)`` are an error when known (not under a trace)."""
  if not is_concrete(experts) or not experts.size:
    return
  low, high = int(experts.min()), int(experts.max())
  if low < 0 or high >= num_experts:
    raise ValueError(f"{name} must be in [0, {num_experts}), got values from {low} to {high}")


def sort_by_expert(experts: jax.Array, num_experts: int, method: str | None = None):
  """Rows' experts ``[P]`` (each in ``[0, E)``) -> the grouped layout: ``order`` [P] (the row at
  each sorted position), ``position`` [P] (its inverse: where each row sits) and ``group_sizes``
  [E], the rows sorted by expert and stably (by row within an expert).

  ``method``: "counting" or "argsort", by default counting from `COUNTING_SORT_MIN_ROWS` rows.
  A counting sort places a row at its expert's first position plus the rows of its expert
  before it, from a cumulative count over a ``[P, E]`` one-hot. For a 1k-token prompt of
  GPT-OSS-20B (P = 4096, H200) that count takes 5.2 us a layer where XLA's sort of the same keys
  took 31.6 us."""
  experts = jnp.asarray(experts)
  if experts.ndim != 1 or not jnp.issubdtype(experts.dtype, jnp.integer):
    raise ValueError(f"sort_by_expert: experts must be a 1-D integer array, got "
                     f"{experts.dtype}{list(experts.shape)}")
  check_experts_in_range(experts, num_experts, "sort_by_expert: experts")
  num_rows = experts.shape[0]
  method = method or ("counting" if num_rows >= COUNTING_SORT_MIN_ROWS else "argsort")
  if method not in ("counting", "argsort"):
    raise ValueError(f"sort_by_expert: method must be 'counting' or 'argsort', got {method!r}")
  rows = jnp.arange(num_rows, dtype=jnp.int32)
  if method == "argsort":
    order = jnp.argsort(experts, stable=True).astype(jnp.int32)
    position = jnp.zeros_like(rows).at[order].set(rows, unique_indices=True)
    return order, position, jnp.bincount(experts, length=num_experts).astype(jnp.int32)
  one_hot = (experts[:, None] == jnp.arange(num_experts)[None, :]).astype(jnp.int32)  # [P, E]
  group_sizes = one_hot.sum(axis=0)
  before = jnp.cumsum(group_sizes) - group_sizes  # [E]: rows of the experts ahead
  # Rows of its own expert up to and including each row, less one, after those.
  position = before[experts] + (jnp.cumsum(one_hot, axis=0) * one_hot).sum(axis=1) - 1
  order = jnp.zeros_like(rows).at[position].set(rows, unique_indices=True)
  return order, position, group_sizes


def max_tiles(num_rows: int, num_experts: int, block_m: int) -> int:
  """The most tiles `tile_schedule` can need: each group that holds rows ends in at most one
  partial tile, and every other tile is full."""
  groups_with_rows = min(num_experts + 1, num_rows)  # E experts and the tail
  return groups_with_rows + (num_rows - groups_with_rows) // block_m


def clip_group_sizes(group_sizes: jax.Array, num_rows: int) -> jax.Array:
  """Group sizes that end within ``num_rows``: negative sizes count as 0, rows past the end drop.
  Each size is clipped to ``num_rows`` before the sum, which then cannot wrap in int32."""
  sizes = jnp.clip(group_sizes, 0, num_rows).astype(jnp.int32)  # clipped before a narrowing cast
  ends = jnp.minimum(jnp.cumsum(sizes), num_rows)
  return jnp.diff(ends, prepend=0)


def remainders(group_sizes: jax.Array, block_m: int, small_block_m: int) -> jax.Array:
  """[E]: each group's last rows past its full ``block_m`` tiles when they are at most
  ``small_block_m`` (else 0): rows that a tile of ``small_block_m`` covers at a fraction of a
  ``block_m`` tile's cost (`tile_schedule`'s ``leave_last`` and `remainder_schedule`)."""
  rest = group_sizes % block_m
  return jnp.where(rest <= small_block_m, rest, 0)


def tile_schedule(group_sizes: jax.Array, num_rows: int, block_m: int,
                  read_rows: int | None = None, leave_last: jax.Array | None = None
                  ) -> TileSchedule:
  """Tiles for ``group_sizes`` [E] (clipped, see `clip_group_sizes`) over ``num_rows`` rows;
  every tile's window stays within the first ``read_rows >= max(block_m, num_rows)`` rows
  (default ``num_rows``; the kernel clamps its reads of an x with fewer). ``leave_last`` [E]:
  rows at the end of each group that no tile covers (`remainder_schedule` tiles them)."""
  read_rows = num_rows if read_rows is None else read_rows
  if read_rows < max(block_m, num_rows):
    raise ValueError(f"read_rows={read_rows} must be at least block_m={block_m} and "
                     f"num_rows={num_rows}")
  num_experts = group_sizes.shape[0]
  expert_ends = jnp.cumsum(clip_group_sizes(group_sizes, num_rows))
  group_ends = jnp.append(expert_ends, num_rows)  # [E + 1], the tail group last
  group_starts = group_ends - jnp.diff(group_ends, prepend=0)
  if leave_last is not None:
    group_ends = group_ends - jnp.append(leave_last, 0)
  return _tiles(group_starts, group_ends, max_tiles(num_rows, num_experts, block_m), block_m,
                read_rows)


def remainder_schedule(group_sizes: jax.Array, leave_last: jax.Array, num_rows: int,
                       block_m: int, read_rows: int) -> TileSchedule:
  """The tiles `tile_schedule` leaves out with ``leave_last`` (each at most ``block_m`` rows):
  one tile a group that has such rows, no tail group; ``read_rows`` as there."""
  group_ends = jnp.cumsum(clip_group_sizes(group_sizes, num_rows))
  return _tiles(group_ends - leave_last, group_ends, min(group_sizes.shape[0], num_rows),
                block_m, read_rows)


def _tiles(group_starts, group_ends, num_tiles: int, block_m: int, read_rows: int):
  """Tiles of at most ``block_m`` rows over each group's ``[start, end)``, in group order;
  tiles past the last mark their group one past the last group's index."""
  last_group = group_starts.shape[0] - 1
  tiles = -(-jnp.maximum(group_ends - group_starts, 0) // block_m)
  tile_ends = jnp.cumsum(tiles)
  tile_starts = tile_ends - tiles

  t = jnp.arange(num_tiles, dtype=jnp.int32)
  # "compare_all": a [T, E + 1] comparison in one fusion. The default binary search lowers to a
  # while loop, and on a GPU each of its trips waits on the host (~0.1 ms per call, measured).
  group = jnp.searchsorted(tile_ends, t, side="right", method="compare_all").astype(jnp.int32)
  in_range = group <= last_group
  g = jnp.minimum(group, last_group)
  start = group_starts[g] + (t - tile_starts[g]) * block_m
  end = jnp.minimum(start + block_m, group_ends[g])
  start, end = jnp.where(in_range, start, 0), jnp.where(in_range, end, 0)
  window = jnp.clip(start, 0, read_rows - block_m)
  return TileSchedule(group=group, start=start, end=end, window=window)


def valid_experts(row_experts: jax.Array, num_experts: int) -> jax.Array:
  """[P] int32: each row's expert, E where it is outside [0, E) (such rows give zeros)."""
  valid = (row_experts >= 0) & (row_experts < num_experts)
  return jnp.where(valid, row_experts, num_experts).astype(jnp.int32)
