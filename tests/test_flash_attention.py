"""The attention kernels (interpret mode on CPU, compiled on a GPU) against a float64 numpy
oracle: sinks, causal and sliding-window masks, grouped heads, left padding, ragged lengths, and
for decoding a ring cache split over programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mxfp4_jax.kernels.flash_attention import (decode_attention, decode_attention_update,
                                               decode_shares, flash_attention)
from numerics import np_rope, rel_err

INTERPRET = jax.default_backend() != "gpu"


def oracle(q, k, v, positions, sinks, window, k_positions=None):
  """float64: softmax over the visible keys plus the head's sink logit, which is then dropped."""
  k_positions = positions if k_positions is None else k_positions
  q, k, v = (np.asarray(jnp.asarray(a).astype(jnp.float32), np.float64) for a in (q, k, v))
  scores = np.einsum("bqkgd,bskd->bkgqs", q, k) / np.sqrt(q.shape[-1])
  delta = positions[:, :, None] - k_positions[:, None, :]  # [B, T, S]
  visible = (k_positions[:, None, :] >= 0) & (delta >= 0)
  if window is not None:
    visible &= delta < window
  scores = np.where(visible[:, None, None], scores, -np.inf)
  sink = np.asarray(sinks, np.float64)[None, :, :, None, None]
  top = np.maximum(scores.max(-1, keepdims=True), sink)
  weights = np.exp(scores - top)
  probs = weights / (weights.sum(-1, keepdims=True) + np.exp(sink - top))
  return np.einsum("bkgqs,bskd->bqkgd", probs, v)


def left_padded_positions(lengths, t):
  positions = np.full((len(lengths), t), -1, np.int32)
  for row, n in enumerate(lengths):
    positions[row, t - n:] = np.arange(n)
  return positions


@pytest.mark.parametrize("t, lengths, kv_heads, group, window, block_q, block_k", [
    (1, [1], 1, 1, None, 16, 16),
    (37, [37, 20], 2, 3, None, 16, 16),  # ragged T, a left-padded row, 3 heads per KV head
    (37, [37, 20], 2, 3, 5, 16, 16),  # a window smaller than a block
    (70, [70], 1, 2, 24, 16, 32),  # a window spanning blocks; block_k > block_q
    (50, [50, 9], 2, 1, 128, 32, 16),  # a window longer than the prompt
    # The earliest key a query block's first query sees is the last key of a key block: a
    # first key block one too far drops it.
    (40, [40, 23], 1, 2, 2, 16, 16),
    (40, [40, 23], 1, 2, 18, 16, 16),
    (70, [70, 41], 1, 2, 34, 16, 32),
])
def test_matches_float64_oracle(rng, t, lengths, kv_heads, group, window, block_q, block_k):
  head_dim = 16
  q = jnp.asarray(rng.standard_normal((len(lengths), t, kv_heads, group, head_dim)), jnp.bfloat16)
  k = jnp.asarray(rng.standard_normal((len(lengths), t, kv_heads, head_dim)), jnp.bfloat16)
  v = jnp.asarray(rng.standard_normal((len(lengths), t, kv_heads, head_dim)), jnp.bfloat16)
  # Sinks from heavy to negligible, so that the sink's share of the softmax matters.
  sinks = jnp.asarray(rng.uniform(-3, 3, (kv_heads, group)), jnp.float32)
  positions = left_padded_positions(lengths, t)
  out = flash_attention(q, k, v, jnp.asarray(positions), sinks, window=window, block_q=block_q,
                        block_k=block_k, interpret=INTERPRET)
  ref = oracle(q, k, v, positions, sinks, window)
  assert out.shape == q.shape and out.dtype == q.dtype
  assert rel_err(out, ref) < 1e-2
  padding = positions < 0
  np.testing.assert_array_equal(np.asarray(out.astype(jnp.float32))[padding], 0)


def _random_attention(rng, b, t, kv_heads=1, group=2, head_dim=16):
  q = jnp.asarray(rng.standard_normal((b, t, kv_heads, group, head_dim)), jnp.bfloat16)
  k, v = (jnp.asarray(rng.standard_normal((b, t, kv_heads, head_dim)), jnp.bfloat16)
          for _ in range(2))
  return q, k, v, jnp.asarray(rng.uniform(-3, 3, (kv_heads, group)), jnp.float32)


@pytest.mark.parametrize("window", [None, 3])
def test_right_padding_and_gaps_keep_the_contract(rng, window):
  """Positions that rise faster than one a token, and padding after a row's tokens, leave no
  visible key in the blocks the kernel skips: accepted, and the oracle's result."""
  positions = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
                        [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36,
                         38]], np.int32)
  if window is None:  # padding between tokens too: without a window only the order matters
    positions = np.concatenate([positions, [[0, 1, 2, 3] + [-1] * 12 + [4, 5, 6, 7]]])
  q, k, v, sinks = _random_attention(rng, len(positions), 20)
  out = flash_attention(q, k, v, jnp.asarray(positions), sinks, window=window, block_q=16,
                        block_k=16, interpret=INTERPRET)
  assert rel_err(out, oracle(q, k, v, positions, sinks, window)) < 1e-2


@pytest.mark.parametrize("window, row, message", [
    (None, [0, 1, 2, 3, 4, 5, 0, 1], "rise along the row.*position 0 at index 6"),  # 2 prompts
    (4, [0, 1, 2, 3, 4, 5, 0, 1], "position 0 at index 6"),
    (None, [5, 4, 3, 2, 1, 0, -1, -1], "position 4 at index 1"),
    (None, [0, 1, 1, 2, 3, 4, 5, 6], "position 1 at index 2"),
    # Padding between tokens: a window counts keys back by position, the kernel by index.
    (4, [0, 1, 2, -1, -1, 3, 4, 5], r"rise by at least one per index \(there is a window; "
                                    "padding between tokens counts as an index\).*"
                                    "position 3 at index 5"),
])
def test_positions_that_break_the_contract_error(rng, window, row, message):
  """Positions whose visible keys the kernel would skip (later by index, or by more than the
  window): refused, naming the row and the first such token, not silently wrong output."""
  q, k, v, sinks = _random_attention(rng, 2, 8)
  positions = jnp.asarray([list(range(8)), row], jnp.int32)
  with pytest.raises(ValueError, match=rf"positions\[1\] must .*{message} does not"):
    flash_attention(q, k, v, positions, sinks, window=window, block_q=16, block_k=16,
                    interpret=INTERPRET)


def test_scores_far_below_the_sink_are_finite(rng):
  """A very negative score everywhere (q's elements positive, k's negative) beside a large sink,
  so that the keys' exponentials underflow: no NaN or inf."""
  q = jnp.asarray(np.abs(rng.standard_normal((1, 20, 1, 2, 16))) * 30, jnp.bfloat16)
  k = jnp.asarray(-np.abs(rng.standard_normal((1, 20, 1, 16))), jnp.bfloat16)
  v = jnp.asarray(rng.standard_normal((1, 20, 1, 16)), jnp.bfloat16)
  sinks = jnp.asarray([[40.0, -40.0]], jnp.float32)
  positions = left_padded_positions([20], 20)
  out = flash_attention(q, k, v, jnp.asarray(positions), sinks, window=4, block_q=16,
                        block_k=16, interpret=INTERPRET)
  assert np.isfinite(np.asarray(out.astype(jnp.float32))).all()
  assert rel_err(out, oracle(q, k, v, positions, sinks, 4)) < 1e-2


@pytest.mark.parametrize("window, num_programs, slots", [
    (None, 4, 48), (None, 64, 48), (5, 64, 48), (40, 8, 48),  # 1 share of 3 blocks, 3, 3, 2
    (None, 1, 160),  # one share of 10 blocks: more than STRAIGHT_LINE_BLOCKS, so a loop
    (7, 8, 288),  # 2 shares of 9 blocks, looped, then merged
    (None, 256, 272)])  # 17 shares of 1 block: a merge over a share count not a power of two
def test_decode_over_a_ring_cache_matches_float64_oracle(rng, window, num_programs, slots):
  """Slots in ring order (not sorted by position), empty slots, a row that is mostly padding;
  the slots split into shares merged after the kernel, or one share normalised in it."""
  b, kv_heads, group, head_dim = 2, 2, 3, 16
  q = jnp.asarray(rng.standard_normal((b, kv_heads, group, head_dim)), jnp.bfloat16)
  k = jnp.asarray(rng.standard_normal((b, slots, kv_heads, head_dim)), jnp.bfloat16)
  v = jnp.asarray(rng.standard_normal((b, slots, kv_heads, head_dim)), jnp.bfloat16)
  sinks = jnp.asarray(rng.uniform(-3, 3, (kv_heads, group)), jnp.float32)
  q_pos = np.array([slots + 12, 7])
  k_pos = np.stack([(np.arange(slots) + 13) % slots + 13,  # 13..q_pos rotated, as a ring holds them
                    np.where(np.arange(slots) <= 7, np.arange(slots), -1)])
  out = decode_attention(q, k, v, jnp.asarray(q_pos), jnp.asarray(k_pos), sinks, window=window,
                         block_k=16, num_programs=num_programs, interpret=INTERPRET)
  ref = oracle(q[:, None], k, v, q_pos[:, None], sinks, window, k_positions=k_pos)[:, 0]
  assert out.shape == q.shape and out.dtype == q.dtype
  assert rel_err(out, ref) < 1e-2


@pytest.mark.parametrize("window, num_programs, slots, slot, block_k, norm, laps", [
    (None, 64, 96, 50, 32, False, 3),  # 3 shares of 1 block (the slot in the middle one), merged
    (None, 1, 96, 95, 32, True, -1),  # one share of 3 blocks, normalised in the kernel; last slot
    (40, 8, 288, 7, 16, True, 3),  # 2 shares of 9 blocks, looped; the window ends inside the ring
    (None, 64, 128, 0, 32, False, -2),  # 4 shares of 1 block, the first slot (step -256)
    (None, 64, 64, 33, 32, False, 0)])  # 2 blocks: one share (UNSPLIT_BLOCKS)
def test_decode_update_rotates_stores_and_attends(rng, window, num_programs, slots, slot,
                                                  block_k, norm, laps):
  """decode_attention_update against the norm's 1/RMS, the bias, RoPE, the cache write and
  attention done apart in float64: the slot's old key is not seen, the new key is, every other
  slot keeps its bytes. The step is ``slot + laps * slots``, its slot ``step % slots`` as Python
  takes it: step -1 is the last slot."""
  b, kv_heads, group, head_dim = 2, 2, 3, 32
  heads = kv_heads * group
  qkv = jnp.asarray(rng.standard_normal((b, heads + 2 * kv_heads, head_dim)), jnp.bfloat16)
  k = jnp.asarray(rng.standard_normal((b, slots, kv_heads, head_dim)), jnp.bfloat16)
  v = jnp.asarray(rng.standard_normal((b, slots, kv_heads, head_dim)), jnp.bfloat16)
  sinks = jnp.asarray(rng.uniform(-3, 3, (kv_heads, group)), jnp.float32)
  angles = rng.uniform(-np.pi, np.pi, (b, head_dim // 2))
  cos, sin = np.cos(angles) * 1.3, np.sin(angles) * 1.3  # YaRN scales both
  q_pos = np.array([slots + 40, 9])
  k_pos = np.stack([(np.arange(slots) - slot) % slots + q_pos[0] - slots,  # a ring, oldest at slot
                    np.where(np.arange(slots) < 9, np.arange(slots), -1)])
  bias = jnp.asarray(rng.standard_normal((heads + 2 * kv_heads) * head_dim), jnp.bfloat16)
  # Rows of 100 features (not a power of two) whose RMS scales the projections, about 1 / 3.
  norm_rows = jnp.asarray(rng.standard_normal((b, 100)) * 3, jnp.bfloat16) if norm else None
  eps = 0.25
  out, new_k, new_v, new_pos = decode_attention_update(
      qkv, jnp.asarray(cos, jnp.float32), jnp.asarray(sin, jnp.float32), k, v,
      jnp.asarray(q_pos), jnp.asarray(k_pos), jnp.int32(slot + laps * slots), sinks, bias,
      norm_rows, norm_eps=eps, window=window, block_k=block_k, num_programs=num_programs,
      interpret=INTERPRET)

  f64 = lambda a: np.asarray(jnp.asarray(a).astype(jnp.float32), np.float64)
  inv_rms = 1 / np.sqrt(np.mean(f64(norm_rows) ** 2, axis=1) + eps) if norm else np.ones(b)
  proj = f64(qkv) * inv_rms[:, None, None] + f64(bias).reshape(qkv.shape[1:])
  rope = lambda x: np_rope(x, cos[:, None], sin[:, None])
  want_k, want_v, want_pos = f64(k), f64(v), k_pos.copy()
  want_k[:, slot] = rope(proj[:, heads:heads + kv_heads])
  want_v[:, slot] = f64(jnp.asarray(proj[:, heads + kv_heads:], jnp.bfloat16))
  want_pos[:, slot] = q_pos
  # The stored key is rotated in float32 and rounded to bf16 (one ulp from the float64 rotation
  # at most); all other slots are untouched.
  np.testing.assert_allclose(f64(new_k), want_k, rtol=2 ** -8, atol=1e-6)
  untouched = np.arange(slots) != slot
  np.testing.assert_array_equal(f64(new_k)[:, untouched], f64(k)[:, untouched])
  np.testing.assert_array_equal(f64(new_v), want_v)
  np.testing.assert_array_equal(np.asarray(new_pos), want_pos)
  q = rope(proj[:, :heads]).reshape(b, 1, kv_heads, group, head_dim)
  ref = oracle(q, want_k, want_v, q_pos[:, None], sinks, window, k_positions=want_pos)[:, 0]
  assert out.shape == (b, kv_heads, group, head_dim) and out.dtype == jnp.bfloat16
  assert rel_err(out, ref) < 1e-2


def test_decode_update_rejects_a_qkv_that_does_not_fit_the_cache():
  k = jnp.zeros((1, 16, 2, 32), jnp.bfloat16)
  qkv = jnp.zeros((1, 5, 32), jnp.bfloat16)  # 1 query head + 2 x 2 would need 5: heads % 2 != 0
  table = jnp.zeros((1, 16))
  with pytest.raises(ValueError, match=r"qkv \[1, heads \+ 2 kv_heads, 32\] needs a cache"):
    decode_attention_update(qkv, table, table, k, k, jnp.zeros((1,), jnp.int32),
                            jnp.zeros((1, 16), jnp.int32), 0, jnp.zeros((2, 1)), block_k=16,
                            interpret=True)
  with pytest.raises(ValueError, match=r"cos must be \[1, 16\]"):
    decode_attention_update(jnp.zeros((1, 6, 32), jnp.bfloat16), table[:, :8], table, k, k,
                            jnp.zeros((1,), jnp.int32), jnp.zeros((1, 16), jnp.int32), 0,
                            jnp.zeros((2, 1)), block_k=16, interpret=True)
  with pytest.raises(ValueError, match=r"k_positions must be int32 \(the cache is updated in "):
    decode_attention_update(jnp.zeros((1, 6, 32), jnp.bfloat16), table, table, k, k,
                            jnp.zeros((1,), jnp.int32), jnp.zeros((1, 16), jnp.int16), 0,
                            jnp.zeros((2, 1)), block_k=16, interpret=True)
  with pytest.raises(ValueError, match=r"step must be a signed int scalar, got float32\[\]"):
    decode_attention_update(jnp.zeros((1, 6, 32), jnp.bfloat16), table, table, k, k,
                            jnp.zeros((1,), jnp.int32), jnp.zeros((1, 16), jnp.int32), 2.7,
                            jnp.zeros((2, 1)), block_k=16, interpret=True)


@pytest.mark.parametrize("heads, num_blocks, num_programs, expected", [
    (8, 17, 256, (17, 1)),  # batch 1, 1k keys: one block a share
    (64, 17, 256, (4, 5)),  # batch 8
    (512, 17, 256, (1, 17)),  # batch 64: one share, normalised in the kernel
    (8, 129, 256, (26, 5)),  # batch 1, 8k keys
    (512, 129, 256, (5, 26)),  # batch 64, 8k keys: shares capped at MAX_SHARE_BLOCKS
    (8, 2, 256, (1, 2)),  # batch 1, a sliding layer's ring: one share, no merge
])
def test_decode_shares(heads, num_blocks, num_programs, expected):
  assert decode_shares(heads, num_blocks, num_programs) == expected


def test_decode_rejects_a_head_dim_the_kernel_cannot_load():
  q = jnp.zeros((1, 1, 2, 24), jnp.bfloat16)
  k = jnp.zeros((1, 16, 1, 24), jnp.bfloat16)
  with pytest.raises(ValueError, match="head_dim must be a power of two >= 16"):
    decode_attention(q, k, k, jnp.zeros((1,), jnp.int32), jnp.zeros((1, 16), jnp.int32),
                     jnp.zeros((1, 2)), block_k=16, interpret=True)


def test_decode_needs_whole_key_blocks():
  q = jnp.zeros((1, 1, 2, 16), jnp.bfloat16)
  k = jnp.zeros((1, 40, 1, 16), jnp.bfloat16)
  with pytest.raises(ValueError, match=r"slots \(40\) must be a multiple of block_k=16"):
    decode_attention(q, k, k, jnp.zeros((1,), jnp.int32), jnp.zeros((1, 40), jnp.int32),
                     jnp.zeros((1, 2)), block_k=16, interpret=True)
  with pytest.raises(ValueError, match=r"block_k must be a power of two >= 16 \(.*\), got 8"):
    decode_attention(q, k, k, jnp.zeros((1,), jnp.int32), jnp.zeros((1, 40), jnp.int32),
                     jnp.zeros((1, 2)), block_k=8, interpret=True)


@pytest.mark.parametrize("change, message", [
    (dict(q=(1, 8, 2, 2)), "q must be"),
    (dict(k=(1, 8, 1, 16)), "k must have shape"),
    (dict(positions=(1, 9)), "positions must be"),
    (dict(sinks=(4,)), "sinks must have shape"),
    (dict(q=(1, 8, 2, 2, 24), k=(1, 8, 2, 24), v=(1, 8, 2, 24)), "head_dim must be a power of two"),
    (dict(window=0), r"window must be None or an int from 1 to 2\*\*31 - 1, got 0"),
    (dict(window=-3), r"window must be None or an int from 1 to 2\*\*31 - 1, got -3"),
    (dict(window=4.5), r"window must be None or an int from 1 to 2\*\*31 - 1, got 4.5"),
    (dict(window=True), r"window must be None or an int from 1 to 2\*\*31 - 1, got True"),
    (dict(q=(1, 0, 2, 2, 16), k=(1, 0, 2, 16), v=(1, 0, 2, 16), positions=(1, 0)),
     r"q must not be empty, got \[1, 0, 2, 2, 16\]"),
    (dict(dtype=jnp.int32), "q must be a float array, got int32"),
    (dict(window=2**31), r"window must be None or an int from 1 to 2\*\*31 - 1, got 2147483648"),
    (dict(positions_dtype=jnp.uint32), r"positions must be a signed int array .*, got uint32"),
    (dict(positions_offset=2**31),
     r"positions holds values outside int32: from 2147483648 to 2147483655"),
    (dict(launch=dict(num_warps=6)), "num_warps must be a power of two, got 6"),
    (dict(launch=dict(num_stages=0)), "num_stages must be an int >= 1, got 0"),
])
def test_bad_arguments_name_the_argument(change, message):
  shapes = dict(q=(1, 8, 2, 2, 16), k=(1, 8, 2, 16), v=(1, 8, 2, 16), positions=(1, 8),
                sinks=(2, 2)) | change
  window, dtype = shapes.pop("window", None), shapes.pop("dtype", jnp.bfloat16)
  positions_dtype = shapes.pop("positions_dtype", jnp.int32)
  offset = shapes.pop("positions_offset", 0)  # a host int64 past int32, which a cast would wrap
  launch = shapes.pop("launch", {})
  arrays = {name: jnp.zeros(shape, dtype) for name, shape in shapes.items()}
  arrays["positions"] = (np.arange(shapes["positions"][1], dtype=np.int64)[None] + offset
                         if offset else jnp.zeros(shapes["positions"], positions_dtype))
  with pytest.raises(ValueError, match=message):
    flash_attention(**arrays, window=window, interpret=True, **launch)


@pytest.mark.parametrize("update", [False, True])
@pytest.mark.parametrize("change, message", [
    (dict(sinks=jnp.zeros((3, 2))), r"sinks must have shape \[2, 3\] \(kv_heads, group\), "
                                     r"got \[3, 2\]"),  # transposed
    (dict(sinks=jnp.zeros(5)), r"sinks must have shape \[2, 3\] .*, got \[5\]"),
    (dict(q_positions=jnp.zeros(1)), r"q_positions must be a signed int array of shape \[1\], "
                                     r"got float32\[1\]"),
    (dict(k_positions=jnp.zeros((1, 16))),
     r"k_positions must be a signed int array .*, got float32"),
    (dict(k_positions=jnp.zeros((1, 16), jnp.uint32)),
     r"k_positions must be a signed int .*uint32"),
    (dict(q_positions=np.array([2**32 + 3])),  # jit would wrap it to position 3
     r"q_positions holds values outside int32: from 4294967299 to 4294967299"),
    (dict(sinks=jnp.zeros((2, 3), jnp.int32)), "sinks must be a float array, got int32"),
    (dict(window=2**31), r"window must be None or an int from 1 to 2\*\*31 - 1, got 2147483648"),
    (dict(k_positions=jnp.zeros((1, 8), jnp.int32)), r"k_positions .*\[1, 16\], got int32\[1, 8\]"),
    (dict(window=0), r"window must be None or an int from 1 to 2\*\*31 - 1, got 0"),
    (dict(window=4.5), r"window must be None or an int from 1 to 2\*\*31 - 1, got 4.5"),
    (dict(slots=0), r"the cache \[1, 0, 2, 16\] must not be empty"),
    (dict(dtype=jnp.int32), "must be a float array, got int32"),
    (dict(launch=dict(num_programs=0)), "num_programs must be an int >= 1, got 0"),
    (dict(launch=dict(num_warps=3)), "num_warps must be a power of two, got 3"),
    (dict(launch=dict(num_stages=1.5)), "num_stages must be an int >= 1, got 1.5"),
])
def test_decode_bad_arguments_name_the_argument(update, change, message):
  """decode_attention and decode_attention_update: K=2 KV heads of G=3 query heads, 16 slots."""
  change = dict(change)  # shared by both values of update
  slots = change.pop("slots", 16)
  dtype = change.pop("dtype", jnp.bfloat16)  # of the queries (or projections) and the cache
  launch = change.pop("launch", {})
  args = dict(q_positions=jnp.zeros(1, jnp.int32), k_positions=jnp.zeros((1, slots), jnp.int32),
              sinks=jnp.zeros((2, 3)), window=None) | change
  cache, table = jnp.zeros((1, slots, 2, 16), dtype), jnp.zeros((1, 8))
  positions = args["q_positions"], args["k_positions"]
  with pytest.raises(ValueError, match=message):
    if update:
      decode_attention_update(jnp.zeros((1, 10, 16), dtype), table, table, cache, cache,
                              *positions, 0, args["sinks"], window=args["window"], block_k=16,
                              interpret=True, **launch)
    else:
      decode_attention(jnp.zeros((1, 2, 3, 16), dtype), cache, cache, *positions,
                       args["sinks"], window=args["window"], block_k=16, interpret=True,
                       **launch)


def _call_small(kernel: str, sinks=None, **static):
  """One of the three attention kernels on small shapes (K=2 KV heads of G=2), interpreted."""
  sinks = jnp.zeros((2, 2)) if sinks is None else sinks
  static = dict(interpret=True) | static
  if kernel == "flash_attention":
    return flash_attention(jnp.zeros((1, 8, 2, 2, 16)), jnp.zeros((1, 8, 2, 16)),
                           jnp.zeros((1, 8, 2, 16)), jnp.zeros((1, 8), jnp.int32), sinks,
                           **static)
  cache, positions = jnp.zeros((1, 16, 2, 16)), (jnp.zeros(1, jnp.int32),
                                                  jnp.zeros((1, 16), jnp.int32))
  static = dict(block_k=16) | static
  if kernel == "decode_attention":
    return decode_attention(jnp.zeros((1, 2, 2, 16)), cache, cache, *positions, sinks, **static)
  return decode_attention_update(jnp.zeros((1, 8, 16)), jnp.zeros((1, 8)), jnp.zeros((1, 8)),
                                 cache, cache, *positions, 0, sinks, **static)


KERNELS = ["flash_attention", "decode_attention", "decode_attention_update"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_list_for_an_array_is_named(kernel):
  """jit takes a list as a tree of scalars: the check names it instead of a shape check failing
  on a list (or a trace failing deep in JAX)."""
  with pytest.raises(TypeError, match="sinks must be an array, got list"):
    _call_small(kernel, sinks=[[0.0] * 2] * 2)


def test_none_for_a_required_array_is_named():
  """None passes jit as an empty tree: named here, not an AttributeError on its shape."""
  q, kv, sinks = jnp.zeros((1, 8, 2, 2, 16)), jnp.zeros((1, 8, 2, 16)), jnp.zeros((2, 2))
  with pytest.raises(TypeError, match="sinks must be an array, got NoneType"):
    flash_attention(q, kv, kv, jnp.zeros((1, 8), jnp.int32), None, interpret=True)
  cache, slots = jnp.zeros((1, 16, 2, 16)), jnp.zeros((1, 16), jnp.int32)
  with pytest.raises(TypeError, match="v must be an array, got NoneType"):
    decode_attention(q[:, 0], cache, None, jnp.zeros(1, jnp.int32), slots, sinks, block_k=16,
                     interpret=True)
  with pytest.raises(TypeError, match="cos must be an array, got NoneType"):
    decode_attention_update(jnp.zeros((1, 8, 16)), None, jnp.zeros((1, 8)), cache, cache,
                            jnp.zeros(1, jnp.int32), slots, 0, sinks, block_k=16,
                            interpret=True)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("static, message", [
    (dict(block_k=[16]), r"block_k must be a power of two >= 16 \(a Triton block\), got \[16\]"),
    (dict(num_warps=[4]), r"num_warps must be an int >= 1, got \[4\]"),
    (dict(window=[8]), r"window must be None or an int from 1 to 2\*\*31 - 1, got \[8\]"),
    (dict(interpret=[True]), r"interpret must be a bool, got \[True\]"),
])
def test_a_list_for_a_static_argument_is_named(kernel, static, message):
  """The static arguments are checked before jit hashes them, where a list fails with JAX's
  message naming no argument."""
  with pytest.raises(ValueError, match=message):
    _call_small(kernel, **static)


def test_a_list_for_norm_eps_is_named():
  with pytest.raises(ValueError, match=r"norm_eps must be a concrete number >= 0, got \[1e-05\]"):
    _call_small("decode_attention_update", norm_eps=[1e-5])


@pytest.mark.parametrize("kernel", ["flash_attention", "decode_attention"])
def test_kernels_off_the_gpu_need_interpret_mode(monkeypatch, kernel):
  """The error names the kernel, ahead of any trace."""
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  with pytest.raises(ValueError, match=f"{kernel} compiles for a GPU only; on cpu pass "
                                       "interpret=True"):
    if kernel == "flash_attention":
      flash_attention(jnp.zeros((1, 3, 1, 5, 16)), jnp.zeros((1, 3, 1, 16)),
                      jnp.zeros((1, 3, 1, 16)), jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 5)))
    else:
      decode_attention(jnp.zeros((1, 1, 5, 16)), jnp.zeros((1, 48, 1, 16)),
                       jnp.zeros((1, 48, 1, 16)), jnp.zeros(1, jnp.int32),
                       jnp.zeros((1, 48), jnp.int32), jnp.zeros((1, 5)), block_k=16)


@pytest.mark.parametrize("block_q, block_k", [(32, 48), (8, 16)])
def test_blocks_that_are_not_triton_blocks_error(block_q, block_k):
  q = jnp.zeros((1, 48, 1, 1, 16), jnp.bfloat16)
  k = jnp.zeros((1, 48, 1, 16), jnp.bfloat16)
  positions = jnp.broadcast_to(jnp.arange(48, dtype=jnp.int32), (1, 48))
  with pytest.raises(ValueError, match="must be a power of two >= 16"):
    flash_attention(q, k, k, positions, jnp.zeros((1, 1)), block_q=block_q, block_k=block_k,
                    interpret=True)


def test_decode_attention_and_its_merge_lower_to_triton_for_h100(lowered_for_h100):
  """Lowered (not compiled) for CUDA at GPT-OSS's decode shapes: 17 shares of a 1k cache, the
  shares' merge a second kernel; both modules verified."""
  sds = jax.ShapeDtypeStruct
  cache = sds((1, 1088, 8, 64), jnp.bfloat16)
  f = lambda q, k, v, q_pos, k_pos, sinks: decode_attention(q, k, v, q_pos, k_pos, sinks)
  text = jax.jit(f).trace(sds((1, 8, 8, 64), jnp.bfloat16), cache, cache, sds((1,), jnp.int32),
                          sds((1, 1088), jnp.int32), sds((8, 8), jnp.float32)).lower(
                              lowering_platforms=("cuda",)).as_text()
  assert [ok for ok, _ in lowered_for_h100] == [True, True]
  assert "decode_attention_sinks" in text and "decode_attention_merge" in text


def test_decode_update_lowers_to_triton_for_h100(lowered_for_h100):
  """The model's decode-step kernel, lowered (not compiled) for CUDA at GPT-OSS's shapes: the
  norm's RMS, the bias, RoPE and the cache write in the attention kernel, then the merge."""
  sds = jax.ShapeDtypeStruct
  cache = sds((1, 1088, 8, 64), jnp.bfloat16)
  table = sds((1, 32), jnp.float32)
  text = jax.jit(decode_attention_update).trace(
      sds((1, 80, 64), jnp.bfloat16), table, table, cache, cache, sds((1,), jnp.int32),
      sds((1, 1088), jnp.int32), sds((), jnp.int32), sds((8, 8), jnp.float32),
      sds((80 * 64,), jnp.bfloat16), sds((1, 2880), jnp.bfloat16)).lower(
          lowering_platforms=("cuda",)).as_text()
  assert [ok for ok, _ in lowered_for_h100] == [True, True]
  assert "decode_attention_sinks" in text and "decode_attention_merge" in text
