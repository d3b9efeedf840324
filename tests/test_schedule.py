"""The static tile schedule for ragged groups: every row written once, by a tile of its group."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxfp4_jax.kernels import schedule as sched


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def tile_schedule(group_sizes, num_rows, block_m, read_rows=None):
  return sched.tile_schedule(group_sizes, num_rows, block_m, read_rows)


def row_groups(group_sizes, num_rows):
  """[P]: the group of each row after clipping (negative sizes are 0, rows past P drop); E = tail."""
  ends = np.minimum(np.cumsum(np.maximum(group_sizes, 0)), num_rows)
  return np.searchsorted(ends, np.arange(num_rows), side="right")


@st.composite
def schedules(draw):
  block_m = draw(st.sampled_from([16, 32, 64]))
  num_rows = draw(st.integers(1, 300))  # fewer than block_m: x is padded up to one tile
  sizes = draw(st.lists(st.one_of(st.just(0), st.integers(-2, 90)), min_size=1, max_size=9))
  return np.array(sizes, np.int32), num_rows, block_m


@given(schedules())
def test_every_row_written_once_by_its_group(case):
  group_sizes, num_rows, block_m = case
  num_experts, read_rows = len(group_sizes), max(num_rows, block_m)
  tiles = jax.tree.map(np.asarray, tile_schedule(jnp.asarray(group_sizes), num_rows, block_m,
                                                 read_rows))
  group, start, end, window = tiles.group, tiles.start, tiles.end, tiles.window

  # A static number of tiles; the ones not needed come last, empty, with group E + 1.
  assert group.shape == (sched.max_tiles(num_rows, num_experts, block_m),)
  used = start < end
  np.testing.assert_array_equal(used, group <= num_experts)
  num_used = int(used.sum())
  assert used[:num_used].all() and not used[num_used:].any()
  assert (group[num_used:] == num_experts + 1).all()
  assert (start[num_used:] == 0).all() and (end[num_used:] == 0).all()

  expected_group = row_groups(group_sizes, num_rows)
  writes = np.zeros(num_rows, np.int64)
  for g, s, e, w in zip(group[used], start[used], end[used], window[used]):
    assert e - s <= block_m
    # A tile never spans two groups, and writes only rows of its own group (E: the tail).
    np.testing.assert_array_equal(expected_group[s:e], g)
    # It reads [window, window + block_m), in bounds and covering the rows it writes.
    assert 0 <= w <= read_rows - block_m
    assert w <= s and e <= w + block_m
    writes[s:e] += 1
  np.testing.assert_array_equal(writes, 1)
  # Tiles come in row order.
  assert (np.diff(start[used]) > 0).all()


@given(schedules())
def test_remainder_tiles_and_the_rest_write_every_row_once(case):
  """With each group's last rows (at most block_m / 2 past its full tiles) left to tiles of
  block_m / 2, the two schedules together still write every row once, by its own group."""
  group_sizes, num_rows, block_m = case
  small, read_rows = block_m // 2, max(num_rows, block_m)
  sizes = sched.clip_group_sizes(jnp.asarray(group_sizes), num_rows)
  leave = sched.remainders(sizes, block_m, small)
  main = sched.tile_schedule(sizes, num_rows, block_m, read_rows, leave)
  rest = sched.remainder_schedule(sizes, leave, num_rows, small, read_rows)
  assert rest.group.shape == (min(len(group_sizes), num_rows),)
  expected_group = row_groups(group_sizes, num_rows)
  writes = np.zeros(num_rows, np.int64)
  for tiles, rows in ((main, block_m), (rest, small)):
    tiles = jax.tree.map(np.asarray, tiles)
    for g, s, e, w in zip(tiles.group, tiles.start, tiles.end, tiles.window):
      if s < e:
        np.testing.assert_array_equal(expected_group[s:e], g)
        assert e - s <= rows and 0 <= w <= read_rows - rows and w <= s and e <= w + rows
        writes[s:e] += 1
  np.testing.assert_array_equal(writes, 1)
  assert (np.asarray(leave) <= small).all()


def test_small_example():
  """Experts of 5, 0 and 20 rows and 7 tail rows, in tiles of 16: 4 tiles used of 4 + 28 // 16."""
  tiles = tile_schedule(jnp.array([5, 0, 20], jnp.int32), 32, 16)
  assert tiles.group.tolist() == [0, 2, 2, 3, 4]
  assert tiles.start.tolist() == [0, 5, 21, 25, 0]
  assert tiles.end.tolist() == [5, 21, 25, 32, 0]
  assert tiles.window.tolist() == [0, 5, 16, 16, 0]


def test_decode_rows_need_a_tile_per_row_at_most():
  """4 rows over 32 experts: at most 4 tiles (one per expert hit), not one per expert."""
  assert sched.max_tiles(4, 32, 16) == 4
  tiles = tile_schedule(jnp.zeros(32, jnp.int32).at[jnp.array([3, 9, 17, 30])].set(1), 4, 16, 16)
  assert tiles.group.tolist() == [3, 9, 17, 30]
  assert tiles.window.tolist() == [0, 0, 0, 0]


def test_read_rows_below_a_tile_is_an_error():
  with pytest.raises(ValueError, match="read_rows=8 must be at least block_m=16"):
    sched.tile_schedule(jnp.array([2, 2]), 4, 16, read_rows=8)


def test_clip_group_sizes():
  clip = jax.jit(sched.clip_group_sizes, static_argnums=1)
  assert clip(jnp.array([3, -4, 10, 5]), 12).tolist() == [3, 0, 9, 0]
  assert clip(jnp.array([0, 0]), 4).tolist() == [0, 0]
  assert clip(jnp.array([2, 2]), 4).tolist() == [2, 2]
  big = 2**31 - 1  # two of them would wrap an int32 sum
  assert clip(jnp.array([big, big, 3], jnp.int32), 20).tolist() == [20, 0, 0]
  # Past int32 in an unsigned array: clipped before the cast, not wrapped negative to 0.
  assert clip(jnp.array([3_000_000_000, 0], jnp.uint32), 8).tolist() == [8, 0]


@pytest.mark.parametrize("method", ["counting", "argsort"])
@given(st.integers(1, 128), st.lists(st.integers(0, 127), min_size=0, max_size=300))
def test_sort_by_expert_is_the_stable_argsort(method, num_experts, experts):
  experts = np.array(experts, np.int32) % num_experts
  order, position, group_sizes = jax.jit(sched.sort_by_expert, static_argnums=(1, 2))(
      jnp.asarray(experts), num_experts, method)
  np.testing.assert_array_equal(order, np.argsort(experts, kind="stable"))
  np.testing.assert_array_equal(np.asarray(order)[np.asarray(position)], np.arange(len(experts)))
  np.testing.assert_array_equal(group_sizes, np.bincount(experts, minlength=num_experts))


def test_sort_by_expert_method():
  experts = jnp.zeros(8, jnp.int32)
  with pytest.raises(ValueError, match="method must be 'counting' or 'argsort', got 'radix'"):
    sched.sort_by_expert(experts, 4, "radix")
  for method in ("counting", "argsort"):  # the counting sort would repeat a row, argsort drop one
    with pytest.raises(ValueError, match=r"experts must be in \[0, 2\), got values from 0 to 5"):
      sched.sort_by_expert(jnp.array([1, 0, 5]), 2, method)
  with pytest.raises(ValueError, match=r"experts must be a 1-D integer array, got float32\[3\]"):
    sched.sort_by_expert(jnp.array([1.0, 0.0, 1.0]), 2)
  # Either side of COUNTING_SORT_MIN_ROWS the default gives the stable layout (numpy's, not
  # one of the two methods: below the threshold the default is the argsort itself).
  for rows in (sched.COUNTING_SORT_MIN_ROWS - 1, sched.COUNTING_SORT_MIN_ROWS):
    experts = np.asarray(jax.random.randint(jax.random.key(rows), (rows,), 0, 32))
    order, position, group_sizes = sched.sort_by_expert(jnp.asarray(experts), 32)
    np.testing.assert_array_equal(order, np.argsort(experts, kind="stable"))
    np.testing.assert_array_equal(np.asarray(order)[np.asarray(position)], np.arange(rows))
    np.testing.assert_array_equal(group_sizes, np.bincount(experts, minlength=32))
