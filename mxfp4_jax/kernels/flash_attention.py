"""Attention kernels in Pallas (Triton lowering) with GPT-OSS's sinks, causal and sliding-window
masks from token positions, grouped-query heads and an online softmax.

`flash_attention` (prefill): the jnp path (`mxfp4_jax.model.gpt_oss.attend`) writes float32
scores for every (query, key) pair to HBM and reads them back several times; an 8k prompt's
full-attention layer moves tens of GB that way. Here a program keeps one block of queries of one
head in registers and streams its keys: only the keys a block can see are read (the causal
diagonal, or the window on sliding layers), and no score leaves the chip. The sink is the
softmax's extra logit: the running maximum starts at it and the running sum at its weight, 1.

`decode_attention` (one new token per row): a program holds the query heads of one KV head as the
rows of its dots and streams a share of the cache's slots (flash-decoding); the shares' partial
softmaxes and the sink are merged by a second, small kernel, or, where a (row, KV head) has one
share, in the first. Slots may be in any order (a ring). `decode_attention_update`, what the
model's decode steps run, takes the step's qkv projection instead: the same kernel rotates the
queries and the new key and stores the new key, value and position in the cache (aliased in place),
so no RoPE or cache-write kernels run before it.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from mxfp4_jax.argcheck import check_int32_range, is_concrete, is_int
from mxfp4_jax.kernels.triton_ops import (check_arrays, check_eps, check_float, check_launch,
                                           check_runs_here, dot_accumulate, is_block,
                                           load_row_rms)

LOG2E = math.log2(math.e)  # the softmax runs in base 2: exp(x) = exp2(x log2 e)
# decode_attention: the slots are split into shares until about DECODE_PROGRAMS programs run, and
# into shares of at most MAX_SHARE_BLOCKS key blocks; a share of up to STRAIGHT_LINE_BLOCKS blocks
# is straight-line code, a longer one a loop. A cache of at most UNSPLIT_BLOCKS blocks (a sliding
# layer's 128-key ring) is one share: its loads go out together, and one share needs no merge.
DECODE_PROGRAMS = 256
MAX_SHARE_BLOCKS = 32
STRAIGHT_LINE_BLOCKS = 8
UNSPLIT_BLOCKS = 2
MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: exp2(MASKED - m) is 0, never NaN


def visible_keys(q_pos, k_pos, window: int | None):
  """Keys that exist, are not after the query, and (sliding layers) are within the window:
  GPT-OSS's mask, for the kernels and the jnp attention alike (positions broadcast)."""
  delta = q_pos - k_pos
  visible = (k_pos >= 0) & (delta >= 0)
  return visible & (delta < window) if window is not None else visible


def _online_softmax(carry, q, k, v, visible, scale: float):
  """One key block into the running (out, top, total) of the rows of ``q``: out [rows, hd] f32
  unnormalised, top [rows] the running maximum (base-2 logits), total [rows] the running sum.
  ``top`` starts at the sink, a finite logit, so a masked score weighs exp2(MASKED - top) = 0
  with no select on the weights (one costs the prefill kernel a third of its speed)."""
  out, top, total = carry
  scores = pltriton.dot(q, k, trans_b=True) * (scale * LOG2E)  # [rows, block_k] f32
  scores = jnp.where(visible, scores, MASKED)
  new_top = jnp.maximum(top, jnp.max(scores, axis=1))
  rescale = jnp.exp2(top - new_top)
  weights = jnp.exp2(scores - new_top[:, None])
  total = total * rescale + jnp.sum(weights, axis=1)
  out = dot_accumulate(out * rescale[:, None], weights.astype(v.dtype), v)
  return out, new_top, total


def _prefill_kernel(q_ref, k_ref, v_ref, pos_ref, sinks_ref, out_ref, *, block_q: int,
                    block_k: int, window: int | None, scale: float):
  q_block, head = pl.program_id(0), pl.program_id(2)
  first_query = q_block * block_q
  q = q_ref[...]  # [block_q, hd]
  q_pos = pos_ref[pl.ds(first_query, block_q)]
  sink = sinks_ref[head] * LOG2E
  head_dim = q.shape[-1]

  def body(key_block, carry):
    keys = pl.ds(key_block * block_k, block_k)
    visible = visible_keys(q_pos[:, None], pos_ref[keys][None, :], window)
    return _online_softmax(carry, q, k_ref[keys, :], v_ref[keys, :], visible, scale)

  # Key blocks this query block can see, by index: positions rise along a row, with a window by
  # at least one per index (`flash_attention`'s contract), so later keys are in the future and
  # keys `window` or more indices back are out of the window. The mask above is exact within
  # the blocks.
  stop = lax.div(first_query + block_q + block_k - 1, block_k)
  start = 0 if window is None else lax.div(jnp.maximum(first_query - window + 1, 0), block_k)
  init = (jnp.zeros((block_q, head_dim), jnp.float32),
          jnp.zeros((block_q,), jnp.float32) + sink, jnp.ones((block_q,), jnp.float32))
  out, _, total = lax.fori_loop(start, stop, body, init)
  out_ref[...] = (out / total[:, None]).astype(out_ref.dtype)


def check_args(q, k, v, positions, sinks) -> None:
  """Raises a one-line error naming the argument whose type, shape or dtype does not fit."""
  check_arrays(q=q, k=k, v=v, positions=positions, sinks=sinks)
  if q.ndim != 5:
    raise ValueError(f"q must be [batch, tokens, kv_heads, group, head_dim], got {list(q.shape)}")
  b, t, kv_heads, group, head_dim = q.shape
  if 0 in q.shape:
    raise ValueError(f"q must not be empty, got {list(q.shape)}")
  for name, a in (("k", k), ("v", v)):
    if a.shape != (b, t, kv_heads, head_dim):
      raise ValueError(f"{name} must have shape {[b, t, kv_heads, head_dim]} to match q, "
                       f"got {list(a.shape)}")
  check_float(q=q, k=k, v=v)
  _check_int("positions", positions, (b, t))
  _check_sinks(sinks, kv_heads, group)
  check_block("head_dim", head_dim)


def check_block(name: str, block: int) -> None:
  """Sizes the kernels load or tile by (block sizes, head_dim) must be Triton block shapes."""
  if not is_block(block):
    raise ValueError(f"{name} must be a power of two >= 16 (a Triton block), got {block}")


def _check_static(what: str, *, window, blocks: dict, num_warps, num_stages, interpret,
                  **counts) -> None:
  """An attention kernel's static arguments, checked before ``jit`` hashes them: a list there
  fails with JAX's message, which names no argument."""
  _check_window(window)
  for name, block in blocks.items():
    check_block(name, block)
  check_launch(num_warps, num_stages, **counts)
  check_runs_here(what, interpret)


def _check_int(name: str, a, shape: tuple[int, ...]) -> None:
  """Positions and the step: signed integers of ``shape`` (a float would be truncated in the
  kernel, and an unsigned one past int32 would wrap into padding, -1, as the kernel casts it)."""
  dtype, got = jnp.result_type(a), list(jnp.shape(a))
  if got != list(shape) or not jnp.issubdtype(dtype, jnp.signedinteger):
    what = f"a signed int array of shape {list(shape)}" if shape else "a signed int scalar"
    raise ValueError(f"{name} must be {what}, got {dtype}{got}")


def _check_sinks(sinks, kv_heads: int, group: int) -> None:
  if sinks.shape != (kv_heads, group):
    raise ValueError(f"sinks must have shape {[kv_heads, group]} (kv_heads, group), "
                     f"got {list(sinks.shape)}")
  check_float(sinks=sinks)


def _check_window(window) -> None:
  """None (full attention) or a count of keys: 0 or less would hide every key; the kernels
  compare it with int32 positions."""
  if window is not None and not (is_int(window) and 1 <= window < 2**31):
    raise ValueError(f"window must be None or an int from 1 to 2**31 - 1, got {window!r}")


def _check_positions_rise(positions, window: int | None) -> None:
  """`flash_attention`'s contract on concrete ``positions``, padding (< 0) aside: along each row
  a position is above every earlier one, and with a window its lead on its index (position -
  index) at least every earlier one's. Then no key after a query by index is visible, nor one
  ``window`` or more indices back: the key blocks the kernel skips by index hold none."""
  p = np.asarray(positions)  # [B, T]
  check_int32_range(positions=p)  # the kernel casts to int32: a wrap would read as padding
  p = p.astype(np.int64)
  lowest = np.iinfo(np.int64).min
  key = p if window is None else p - np.arange(p.shape[1])
  highest = np.maximum.accumulate(np.where(p >= 0, key, lowest), axis=1)
  earlier = np.pad(highest[:, :-1], ((0, 0), (1, 0)), constant_values=lowest)
  fallen = (p >= 0) & ((key <= earlier) if window is None else (key < earlier))
  if fallen.any():
    row, index = (int(i[0]) for i in np.nonzero(fallen))
    rule = "rise" if window is None else ("rise by at least one per index (there is a window; "
                                          "padding between tokens counts as an index)")
    raise ValueError(f"positions[{row}] must {rule} along the row, padding aside, as a "
                     f"prompt's do: position {p[row, index]} at index {index} does not")


def flash_attention(q, k, v, positions, sinks, *, window: int | None = None, block_q: int = 64,
                    block_k: int = 64, num_warps: int = 4, num_stages: int = 2,
                    interpret: bool = False):
  """Self-attention of a prompt over its own tokens (a prefill).

  Args:
    q: ``[B, T, K, G, hd]`` queries; query head ``k G + g`` reads KV head ``k``.
    k, v: ``[B, T, K, hd]``.
    positions: ``[B, T]`` int; -1 marks padding (no key there; a padding query outputs 0).
      Along each row the other positions rise, and with a window by at least one per index
      (padding between two tokens counts as an index), as a prompt's do (a left-padded
      prefill's by exactly one): the kernel skips key blocks by index on that basis. Checked
      where ``positions`` is concrete (not under jit).
    sinks: ``[K, G]`` one logit per query head.
    window: keys fewer than ``window`` positions back are visible (sliding layers); None: all.
    block_q, block_k: query and key rows a program takes at a time (powers of two >= 16).
    num_warps, num_stages: the Triton launch (warps a program, software-pipelining depth).
    interpret: run in Pallas interpret mode (any platform; how the CPU tests run it).
  Returns:
    ``[B, T, K, G, hd]`` in q's dtype; the dots take bf16 operands and accumulate in float32.
  """
  check_args(q, k, v, positions, sinks)
  _check_static("flash_attention", window=window, blocks=dict(block_q=block_q, block_k=block_k),
                num_warps=num_warps, num_stages=num_stages, interpret=interpret)
  if is_concrete(positions):
    _check_positions_rise(positions, window)
  return _flash_attention(q, k, v, positions, sinks, window=window, block_q=block_q,
                          block_k=block_k, num_warps=num_warps, num_stages=num_stages,
                          interpret=interpret)


@functools.partial(jax.jit, static_argnames=("window", "block_q", "block_k", "num_warps",
                                             "num_stages", "interpret"))
def _flash_attention(q, k, v, positions, sinks, *, window, block_q, block_k, num_warps,
                     num_stages, interpret):
  b, t, kv_heads, group, head_dim = q.shape
  out_dtype, (q, k, v) = q.dtype, (a.astype(jnp.bfloat16) for a in (q, k, v))
  heads = kv_heads * group
  padded = -t % max(block_q, block_k)  # powers of two: whole blocks of both sizes
  pad = lambda a, value=0: jnp.pad(a, ((0, 0), (0, padded)) + ((0, 0),) * (a.ndim - 2),
                                   constant_values=value)
  q = pad(q.reshape(b, t, heads, head_dim))  # [B, T', H, hd]: heads of a KV head are adjacent
  k, v, positions = pad(k), pad(v), pad(positions.astype(jnp.int32), -1)
  sinks = sinks.reshape(heads).astype(jnp.float32)
  length = t + padded

  kernel = functools.partial(_prefill_kernel, block_q=block_q, block_k=block_k, window=window,
                             scale=head_dim ** -0.5)
  query_spec = pl.BlockSpec((None, block_q, None, head_dim), lambda i, row, h: (row, i, h, 0))
  kv_spec = pl.BlockSpec((None, length, None, head_dim), lambda i, row, h: (row, 0, h // group, 0))
  out = pl.pallas_call(
      kernel,
      grid=(length // block_q, b, heads),
      in_specs=[query_spec, kv_spec, kv_spec,
                pl.BlockSpec((None, length), lambda i, row, h: (row, 0)),
                pl.BlockSpec((heads,), lambda i, row, h: (0,))],
      out_specs=query_spec,
      out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
      compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages),
      interpret=interpret,
      name="flash_attention_sinks",
  )(q, k, v, positions, sinks)
  return out[:, :t].reshape(b, t, kv_heads, group, head_dim).astype(out_dtype)


def _decode_kernel(q_ref, k_ref, v_ref, k_pos_ref, q_pos_ref, sinks_ref, *refs,
                   block_k: int, blocks_per_share: int, window: int | None, scale: float,
                   num_heads: int, group: int, rows: int, update: bool,
                   norm_eps: float | None):
  if update:  # q_ref holds the step's projections: [B, H + 2K, hd], queries, keys, values
    cos_ref, sin_ref, step_ref, bias_ref, *out_refs, k_out_ref, v_out_ref, pos_out_ref = refs
    if norm_eps is not None:
      norm_rows_ref, *out_refs = out_refs
  else:
    out_refs = refs
  row, kv_head, share = pl.program_id(0), pl.program_id(1), pl.program_id(2)
  head_dim = k_ref.shape[-1]
  # The query heads of one KV head, as many as the dot's smallest M: past the group come the
  # next heads' queries (clamped to the last head), whose results are dropped; that spares
  # padding q and the sinks by two more kernels before this one.
  heads = jnp.minimum(kv_head * group + lax.broadcasted_iota(jnp.int32, (rows,), 0),
                      num_heads - 1)
  q_pos = q_pos_ref[row]
  if update:
    # RoPE (half split) of the queries and the new key in float32, rounded to bf16 as
    # `rope.apply_rope` rounds them: x cos + swap_halves(x) (-sin | sin).
    cols = lax.broadcasted_iota(jnp.int32, (head_dim,), 0)
    half = head_dim // 2
    cos = cos_ref[row, cols % half]
    sin = jnp.where(cols < half, -1.0, 1.0) * sin_ref[row, cols % half]
    inv_rms = 1.0
    if norm_eps is not None:  # the projection's input was the norm's input times its weight
      _, _, inv_rms = load_row_rms(norm_rows_ref, row, norm_eps)
      inv_rms = inv_rms.reshape(())  # one number for every projection of the row

    def projection(index, columns):  # rows ``index`` of this row's projections, [n, hd] f32
      rows, columns = index[:, None], columns[None, :]
      # The bias added in float32 (as cuBLAS adds it to its float32 sums), rounded only after
      # the rotation.
      return (q_ref[row, rows, columns].astype(jnp.float32) * inv_rms
              + bias_ref[rows, columns].astype(jnp.float32))

    def rotated(index):
      return (projection(index, cols) * cos[None, :]
              + projection(index, (cols + half) % head_dim) * sin[None, :]).astype(jnp.bfloat16)
    q = rotated(heads)  # [rows, hd]
    own = jnp.full((1,), num_heads + kv_head, jnp.int32)
    new_k = rotated(own)  # [1, hd]
    new_v = projection(own + num_heads // group, cols).astype(jnp.bfloat16)
    slots = k_ref.shape[0]
    slot = lax.rem(lax.rem(step_ref[0], slots) + slots, slots)  # step % S as Python takes it
  else:
    q = q_ref[row, heads, :].astype(jnp.bfloat16)  # [rows, hd]
  num_blocks = k_ref.shape[0] // block_k
  sink = sinks_ref[heads] * LOG2E
  # The running sum leaves the sink's own weight out: it is added once, at the end.
  carry = (jnp.zeros((rows, head_dim), jnp.float32), sink, jnp.zeros((rows,), jnp.float32))

  def attend_block(block, carry):  # a block past the cache's end re-reads the last, all masked
    keys = pl.ds(jnp.minimum(block, num_blocks - 1) * block_k, block_k)
    k, v = k_ref[keys, :].astype(jnp.bfloat16), v_ref[keys, :].astype(jnp.bfloat16)
    k_pos = k_pos_ref[keys]
    if update:  # the new key in its slot, whatever the cache held there
      is_new = block * block_k + lax.broadcasted_iota(jnp.int32, (block_k,), 0) == slot
      k_pos = jnp.where(is_new, q_pos, k_pos)
      k = jnp.where(is_new[:, None], new_k, k)
      v = jnp.where(is_new[:, None], new_v, v)
    visible = visible_keys(q_pos, k_pos, window) & (block < num_blocks)
    return _online_softmax(carry, q, k, v, visible[None, :], scale)

  first = share * blocks_per_share
  if blocks_per_share <= STRAIGHT_LINE_BLOCKS:
    # Straight-line blocks: a share of a few, whose loads can all be in flight at once.
    for u in range(blocks_per_share):
      carry = attend_block(first + u, carry)
  else:  # a long share: a loop, which Triton pipelines (its loads num_stages - 1 blocks ahead)
    carry = lax.fori_loop(first, jnp.minimum(first + blocks_per_share, num_blocks),
                          attend_block, carry)
  if update:
    # The share that holds the slot stores the new key and value there (and KV head 0 the
    # position): the program reads nothing of the slot but its own `where` above, and no other
    # program of this (row, KV head) reads the slot's block.
    owns_slot = (slot >= first * block_k) & (slot < (first + blocks_per_share) * block_k)

    @pl.when(owns_slot)
    def _store_new_key():
      k_out_ref[pl.ds(slot, 1), :] = new_k.astype(k_out_ref.dtype)
      v_out_ref[pl.ds(slot, 1), :] = new_v.astype(v_out_ref.dtype)

      @pl.when(kv_head == 0)
      def _store_position():
        pos_out_ref[pl.ds(slot, 1)] = jnp.full((1,), q_pos, pos_out_ref.dtype)

  out, top, total = carry
  if len(out_refs) == 3:  # one share of several: the caller merges them with the sink
    for ref, value in zip(out_refs, carry):
      ref[...] = value
    return
  # The only share: add the sink, normalise, and write the group's heads alone.
  [out_ref] = out_refs
  out = out / (total + jnp.exp2(sink - top))[:, None]
  in_group = lax.broadcasted_iota(jnp.int32, (rows, head_dim), 0) < group
  pltriton.store(out_ref.at[row, pl.ds(kv_head * group, rows), :], out.astype(out_ref.dtype),
                 mask=in_group)


def decode_shares(heads: int, num_blocks: int, num_programs: int) -> tuple[int, int]:
  """(shares, key blocks a share) for ``heads`` (row, KV head) pairs over ``num_blocks`` blocks:
  about ``num_programs`` programs, shares of at most `MAX_SHARE_BLOCKS` blocks, none empty;
  one share for at most `UNSPLIT_BLOCKS` blocks."""
  if num_blocks <= UNSPLIT_BLOCKS:
    return 1, num_blocks
  shares = min(num_blocks, max(num_programs // heads, -(-num_blocks // MAX_SHARE_BLOCKS)))
  per_share = -(-num_blocks // shares)
  return -(-num_blocks // per_share), per_share


_DECODE_STATIC = ("window", "block_k", "num_programs", "num_warps", "num_stages", "interpret")
_UPDATE_STATIC = _DECODE_STATIC + ("norm_eps",)


def decode_attention(q, k, v, q_positions, k_positions, sinks, *, window: int | None = None,
                     block_k: int = 64, num_programs: int = DECODE_PROGRAMS, num_warps: int = 4,
                     num_stages: int = 2, interpret: bool = False):
  """One new query per row over a KV cache whose slots may hold keys in any order (a ring).

  Args:
    q: ``[B, K, G, hd]``; k, v: ``[B, S, K, hd]`` with S a multiple of ``block_k``.
    q_positions: ``[B]`` int; k_positions: ``[B, S]`` int, -1 for an empty slot.
    sinks: ``[K, G]``; window: as in `flash_attention`.
    num_programs: the slots are split into shares until about this many programs run
      (flash-decoding), and into shares of at most `MAX_SHARE_BLOCKS` key blocks; the shares'
      partial softmaxes are merged, with the sink, afterwards. When each (row, KV head) has
      one share, the kernel normalises and writes the output itself: no merge.
    block_k, num_warps, num_stages, interpret: as in `flash_attention`.
  Returns:
    ``[B, K, G, hd]`` in q's dtype.
  """
  _check_static("decode_attention", window=window, blocks=dict(block_k=block_k),
                num_warps=num_warps, num_stages=num_stages, interpret=interpret,
                num_programs=num_programs)
  check_int32_range(q_positions=q_positions, k_positions=k_positions)  # before jit wraps them
  return _decode_attention(q, k, v, q_positions, k_positions, sinks, window=window,
                           block_k=block_k, num_programs=num_programs, num_warps=num_warps,
                           num_stages=num_stages, interpret=interpret)


@functools.partial(jax.jit, static_argnames=_DECODE_STATIC)
def _decode_attention(q, k, v, q_positions, k_positions, sinks, *, window, block_k,
                      num_programs, num_warps, num_stages, interpret):
  check_arrays(q=q, k=k, v=v, q_positions=q_positions, k_positions=k_positions, sinks=sinks)
  if q.ndim != 4:
    raise ValueError(f"q must be [batch, kv_heads, group, head_dim], got {list(q.shape)}")
  b, kv_heads, group, head_dim = q.shape
  _check_decode_args(k, v, q_positions, k_positions, sinks, b=b, kv_heads=kv_heads, group=group,
                     head_dim=head_dim, block_k=block_k)
  check_float(q=q)
  [out] = _decode_call(q.reshape(b, kv_heads * group, head_dim), k, v, k_positions, q_positions,
                       sinks, (), group=group, out_dtype=q.dtype, window=window,
                       block_k=block_k, num_programs=num_programs, num_warps=num_warps,
                       num_stages=num_stages, interpret=interpret)
  return out


def decode_attention_update(qkv, cos, sin, k, v, q_positions, k_positions, step, sinks,
                            qkv_bias=None, norm_rows=None, *, norm_eps: float = 1e-5,
                            window: int | None = None, block_k: int = 64,
                            num_programs: int = DECODE_PROGRAMS, num_warps: int = 4,
                            num_stages: int = 2, interpret: bool = False):
  """A decode step's attention from its projections: RoPE on the queries and the new key, the
  new key, value and position stored in cache slot ``step % S``, and `decode_attention` over
  the cache with them, all in one kernel (no RoPE or cache-update kernels before it).

  Args:
    qkv: ``[B, H + 2K, hd]`` the step's projections before RoPE: H query heads (query head
      ``k G + g`` reads KV head ``k``), then K keys, then K values.
    cos, sin: ``[B, hd / 2]`` float32, the rotation of each row's new position (half-split RoPE,
      `mxfp4_jax.model.rope`).
    k, v: ``[B, S, K, hd]`` and k_positions ``[B, S]``: the cache, updated in place (aliased to
      the outputs: under ``jit`` with the cache donated or carried, no copy).
    q_positions: ``[B]`` int, each row's new position.
    step: int scalar, the step's global index: its slot is ``step % S`` (a ring; Python's
      modulo, so a negative step counts back from the last slot).
    sinks, window and the launch arguments: as in `decode_attention`.
    qkv_bias: optional ``[(H + 2K) hd]``, added to qkv in the kernel (so that the projection
      runs without a bias epilogue, which cuBLAS implements as a copy of the bias first).
    norm_rows: optional ``[B, D]``, the rows an RMSNorm before the projection normalizes; qkv is
      then the projection of those rows times the norm's weight, not yet divided by their RMS,
      and the kernel scales it by ``rsqrt(mean(row ** 2) + norm_eps)`` before the bias: the
      norm's reduction and scaling cost no kernels before the projection.
  Returns:
    (``[B, K, G, hd]`` in qkv's dtype, k, v, k_positions updated).
  """
  _check_static("decode_attention_update", window=window, blocks=dict(block_k=block_k),
                num_warps=num_warps, num_stages=num_stages, interpret=interpret,
                num_programs=num_programs)
  check_int32_range(q_positions=q_positions, k_positions=k_positions, step=step)
  return _decode_attention_update(
      qkv, cos, sin, k, v, q_positions, k_positions, step, sinks, qkv_bias, norm_rows,
      norm_eps=check_eps(norm_eps, "norm_eps"), window=window, block_k=block_k,
      num_programs=num_programs, num_warps=num_warps, num_stages=num_stages, interpret=interpret)


@functools.partial(jax.jit, static_argnames=_UPDATE_STATIC)
def _decode_attention_update(qkv, cos, sin, k, v, q_positions, k_positions, step, sinks,
                             qkv_bias, norm_rows, *, norm_eps, window, block_k, num_programs,
                             num_warps, num_stages, interpret):
  check_arrays(qkv=qkv, cos=cos, sin=sin, k=k, v=v, q_positions=q_positions,
               k_positions=k_positions, sinks=sinks, qkv_bias=qkv_bias, norm_rows=norm_rows,
               optional=("qkv_bias", "norm_rows"))
  if qkv.ndim != 3:
    raise ValueError(f"qkv must be [batch, heads + 2 kv_heads, head_dim], got {list(qkv.shape)}")
  b, _, head_dim = qkv.shape
  kv_heads = k.shape[2] if k.ndim == 4 else 0
  heads = qkv.shape[1] - 2 * kv_heads
  if kv_heads == 0 or heads <= 0 or heads % kv_heads:
    raise ValueError(f"qkv [{b}, heads + 2 kv_heads, {head_dim}] needs a cache k [batch, slots, "
                     f"kv_heads, head_dim] with heads a multiple of kv_heads, got qkv "
                     f"{list(qkv.shape)} and k {list(k.shape)}")
  _check_decode_args(k, v, q_positions, k_positions, sinks, b=b, kv_heads=kv_heads,
                     group=heads // kv_heads, head_dim=head_dim, block_k=block_k)
  check_float(qkv=qkv)
  for name, table in (("cos", cos), ("sin", sin)):
    if table.shape != (b, head_dim // 2):
      raise ValueError(f"{name} must be [{b}, {head_dim // 2}], got {list(table.shape)}")
  _check_int("step", step, ())
  if k_positions.dtype != jnp.int32:  # returned as the kernel writes them, for a carried cache
    raise ValueError(f"k_positions must be int32 (the cache is updated in place), got "
                     f"{k_positions.dtype}")
  if qkv_bias is None:
    qkv_bias = jnp.zeros(qkv.shape[1:], qkv.dtype)
  elif qkv_bias.shape != (qkv.shape[1] * head_dim,):
    raise ValueError(f"qkv_bias must have shape [{qkv.shape[1] * head_dim}], "
                     f"got {list(qkv_bias.shape)}")
  extra = (cos.astype(jnp.float32), sin.astype(jnp.float32),
           jnp.reshape(step, (1,)).astype(jnp.int32),
           qkv_bias.reshape(qkv.shape[1:]).astype(qkv.dtype))
  if norm_rows is not None:
    if norm_rows.ndim != 2 or norm_rows.shape[0] != b or norm_rows.shape[1] == 0:
      raise ValueError(f"norm_rows must be [{b}, features >= 1], got {list(norm_rows.shape)}")
    check_float(norm_rows=norm_rows)
    extra += (norm_rows,)
  out, k, v, k_positions = _decode_call(
      qkv, k, v, k_positions, q_positions, sinks, extra, group=heads // kv_heads,
      norm_eps=None if norm_rows is None else norm_eps,
      out_dtype=qkv.dtype, window=window, block_k=block_k, num_programs=num_programs,
      num_warps=num_warps, num_stages=num_stages, interpret=interpret)
  return out, k, v, k_positions


def _check_decode_args(k, v, q_positions, k_positions, sinks, *, b, kv_heads, group, head_dim,
                       block_k):
  """`check_args` for the decode kernels: the cache, the positions and the sinks."""
  check_block("head_dim", head_dim)
  slots = k.shape[1] if k.ndim == 4 else -1
  if k.shape != (b, slots, kv_heads, head_dim) or v.shape != k.shape:
    raise ValueError(f"k and v must have shape [{b}, slots, {kv_heads}, {head_dim}] to match the "
                     f"queries, got {list(k.shape)} and {list(v.shape)}")
  if 0 in k.shape or group == 0:
    raise ValueError(f"the queries ({b} rows, {group} a KV head) and the cache "
                     f"{list(k.shape)} must not be empty")
  check_float(k=k, v=v)
  if slots % block_k:
    raise ValueError(f"the KV cache's slots ({slots}) must be a multiple of block_k={block_k}")
  _check_int("q_positions", q_positions, (b,))
  _check_int("k_positions", k_positions, (b, slots))
  _check_sinks(sinks, kv_heads, group)


def _decode_call(q, k, v, k_positions, q_positions, sinks, extra, *, group, out_dtype, window,
                 block_k, num_programs, num_warps, num_stages, interpret, norm_eps=None):
  """The decode kernel's launch and the merge of its shares. ``q``: ``[B, H, hd]`` queries, or
  with ``extra`` = (cos, sin, step, bias[, norm_rows]) the projections ``[B, H + 2K, hd]`` of an
  updating step, whose outputs then include the cache (aliased to k, v, k_positions):
  -> (out [B, K, G, hd], *cache)."""
  b, slots, kv_heads, head_dim = k.shape
  update = bool(extra)
  heads = kv_heads * group
  rows = max(16, 1 << (group - 1).bit_length())  # the dot's smallest M
  shares, blocks_per_share = decode_shares(b * kv_heads, slots // block_k, num_programs)
  sinks = sinks.astype(jnp.float32).reshape(heads)
  k_positions = k_positions.astype(jnp.int32)

  kernel = functools.partial(_decode_kernel, block_k=block_k, blocks_per_share=blocks_per_share,
                             window=window, scale=head_dim ** -0.5, num_heads=heads, group=group,
                             rows=rows, update=update, norm_eps=norm_eps)
  kv_spec = pl.BlockSpec((None, slots, None, head_dim), lambda i, h, s: (i, 0, h, 0))
  pos_spec = pl.BlockSpec((None, slots), lambda i, h, s: (i, 0))
  whole = lambda a: pl.BlockSpec(a.shape, lambda i, h, s: (0,) * len(a.shape))
  if shares == 1:  # the kernel writes [B, K G, hd] itself
    out_shape = [jax.ShapeDtypeStruct((b, heads, head_dim), out_dtype)]
    out_specs = [whole(out_shape[0])]
  else:  # each share's (out, top, total) of its `rows` query rows, in float32
    part = lambda *tail: pl.BlockSpec((None, None, None, rows, *tail),
                                      lambda i, h, s: (i, h, s, 0, *(0,) * len(tail)))
    out_specs = [part(head_dim), part(), part()]
    out_shape = [jax.ShapeDtypeStruct((b, kv_heads, shares, rows, *tail), jnp.float32)
                 for tail in ((head_dim,), (), ())]
  operands = [q, k, v, k_positions, q_positions.astype(jnp.int32), sinks, *extra]
  aliases = {}
  if update:  # the cache, updated in place
    aliases = {1: len(out_shape), 2: len(out_shape) + 1, 3: len(out_shape) + 2}
    out_specs += [kv_spec, kv_spec, pos_spec]
    out_shape += [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (k, v, k_positions)]
  results = pl.pallas_call(
      kernel,
      grid=(b, kv_heads, shares),
      in_specs=[whole(q), kv_spec, kv_spec, pos_spec,  # q and sinks whole: their rows are gathered
                pl.BlockSpec((b,), lambda i, h, s: (0,)), whole(sinks), *map(whole, extra)],
      out_specs=out_specs,
      out_shape=out_shape,
      input_output_aliases=aliases,
      compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages),
      interpret=interpret,
      name="decode_attention_sinks" + ("_update" if update else ""),
  )(*operands)
  cache = tuple(results[-3:]) if update else ()
  results = results[:-3] if update else results
  if shares == 1:
    return (results[0].reshape(b, kv_heads, group, head_dim), *cache)
  out = _merge_shares(*results, sinks, group=group, out_dtype=out_dtype, interpret=interpret)
  return (out, *cache)


def _merge_kernel(out_ref, top_ref, total_ref, sinks_ref, merged_ref, *, group: int):
  """Program (row, KV head, g): query head ``KV head * group + g``'s shares and its sink."""
  row, kv_head, g = pl.program_id(0), pl.program_id(1), pl.program_id(2)
  num_shares = top_ref.shape[2]
  index = lax.broadcasted_iota(jnp.int32, (pl.next_power_of_2(num_shares),), 0)
  real = index < num_shares
  shares = jnp.minimum(index, num_shares - 1)  # padding re-reads the last share, weighted 0
  head = kv_head * group + g
  sink = sinks_ref[head] * LOG2E
  top = jnp.where(real, top_ref[row, kv_head, shares, g], MASKED)  # [shares]
  peak = jnp.maximum(jnp.max(top), sink)
  weight = jnp.exp2(top - peak)
  total = jnp.sum(total_ref[row, kv_head, shares, g] * weight) + jnp.exp2(sink - peak)
  out = jnp.sum(out_ref[row, kv_head, shares, g, :] * weight[:, None], axis=0) / total  # [hd]
  merged_ref[row, head, :] = out.astype(merged_ref.dtype)


def _merge_shares(out, top, total, sinks, *, group: int, out_dtype, interpret: bool):
  """The shares' partial softmaxes and the sink, merged: out ``[B, K, shares, rows, hd]``, top
  and total ``[B, K, shares, rows]`` float32, sinks ``[K G]`` -> ``[B, K, G, hd]``. One kernel,
  where XLA's reductions and elementwise fusions took two or three (by GPU)."""
  b, kv_heads, _, _, head_dim = out.shape
  merged = pl.pallas_call(
      functools.partial(_merge_kernel, group=group),
      out_shape=jax.ShapeDtypeStruct((b, kv_heads * group, head_dim), out_dtype),
      grid=(b, kv_heads, group),
      compiler_params=pltriton.CompilerParams(num_warps=1, num_stages=1),
      interpret=interpret,
      name="decode_attention_merge",
  )(out, top, total, sinks)
  return merged.reshape(b, kv_heads, group, head_dim)
