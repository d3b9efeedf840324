"""The Pallas (Triton lowering) MXFP4 grouped matmul: weights stay 4-bit in HBM and are decoded
to bf16 in registers, one ``[block_n, 64]`` tile at a time, right before the tensor-core dot.

Operands are swapped (``out^T = W^T x^T``): the decoded weight tile is the dot's A operand, so
Triton can feed wgmma from registers (every decode but ``"lut"``, whose tile goes through shared
memory), and ``block_m`` (rows per expert) can stay as small as 16.
Layout: `mxfp4_jax.mxfp4.layout`; ragged groups: `schedule` (a group's last few rows may go to a
second call with smaller tiles, `KernelConfig.remainder_block_m`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from mxfp4_jax.kernels import schedule as sched
from mxfp4_jax.kernels.reference import expert_of_row, moe_epilogue
from mxfp4_jax.kernels.swiglu import swiglu
from mxfp4_jax.kernels.triton_ops import dot_accumulate, inline_asm
from mxfp4_jax.kernels.tuning import KernelConfig
from mxfp4_jax.mxfp4 import format as fmt
from mxfp4_jax.mxfp4.layout import K_TILE, PackedMXFP4, kernel_byte_order

HALF_TILE = fmt.BLOCK_SIZE  # values under one scale: the low (or high) nibbles of a tile row
_poison_outputs = False


@contextlib.contextmanager
def poisoned_outputs():
  """Kernels traced inside write into a NaN-filled buffer instead of fresh memory, so that an
  output element no program writes reads NaN, on a GPU as in interpret mode (which fills its
  outputs with NaN). For tests: it costs a fill a call."""
  global _poison_outputs
  before, _poison_outputs = _poison_outputs, True
  try:
    yield
  finally:
    _poison_outputs = before


def poisoning() -> bool:
  return _poison_outputs


def lut_plain_order(by_byte):
  """The LUT decode's values for byte i of each of a row's 8 words, 4 x [bn, 8] -> [bn, 32] in
  plain K order: `kernel_byte_order` of the bytes 4 w + i, in one transpose, with the two-way
  stacks along the last axis that the Triton lowering takes. Byte 4 w + i of the layout is
  plain byte 16 (w % 2) + 8 (i // 2) + 2 (w // 2) + i % 2 (tests/test_grouped_matmul.py checks
  it against `kernel_byte_order`)."""
  bn = by_byte[0].shape[0]
  pairs = [jnp.stack(by_byte[c:c + 2], axis=-1) for c in (0, 2)]  # [bn, 8, i % 2] each
  quads = jnp.stack(pairs, axis=-1).reshape(bn, 4, 2, 2, 2)  # [bn, w // 2, w % 2, i % 2, i // 2]
  return quads.transpose(0, 2, 4, 1, 3).reshape(bn, 32)


def _decode_tile(packed, scale_low, scale_high, decode: str, tables=None):
  """Packed bytes of one tile, two [block_n] uint8 scales -> low and high halves, each
  [block_n, 32] bf16 in plain K order (exact, the same bits with every decode). ``packed``:
  [block_n, 32] uint8 in the layout's byte order, or for ``decode="lut"`` the same bytes as
  [block_n, 8] uint32 words, with the lookup tables' registers in ``tables``. Undoing the byte
  order costs no instructions: it is the register layout of the dot's operand."""
  if decode != "lut":
    packed = kernel_byte_order(packed)
  if decode == "integer":
    low, high = fmt.split_nibbles(packed.astype(jnp.int32))
    half = lambda codes, scales: lax.bitcast_convert_type(
        fmt.e2m1_to_bf16_bits(codes, scales.astype(jnp.int32)[:, None]), jnp.bfloat16)
    return half(low, scale_low), half(high, scale_high)

  if decode == "lut":
    def pair_factor(scales):  # the scales' bf16x2 factors, for every word
      return jnp.broadcast_to(fmt.scale_bf16x2_bits(scales)[:, None], packed.shape)

    values = inline_asm(
        fmt.e2m1_lut_ptx(), [packed, pair_factor(scale_low), pair_factor(scale_high), *tables],
        constraints=",".join(["=h"] * 8 + ["r"] * 6), pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(packed.shape, jnp.bfloat16)] * 8)
    return lut_plain_order(values[:4]), lut_plain_order(values[4:])

  def half(nibble, scales):
    bits = fmt.bf16x2_factor_bits(scales)
    factor = jnp.broadcast_to(lax.bitcast_convert_type(bits, jnp.bfloat16)[:, None], packed.shape)
    [out] = pltriton.elementwise_inline_asm(
        fmt.e2m1_bf16x2_ptx(nibble), args=[packed, factor], constraints="=r,=r,r,r,r", pack=4,
        result_shape_dtypes=[jax.ShapeDtypeStruct(packed.shape, jnp.bfloat16)])
    return out
  return half("low", scale_low), half("high", scale_high)


def _kernel(*refs, cfg: KernelConfig, num_experts: int, num_k_tiles: int, out_cols: int,
            swiglu_half: int, has_bias: bool, has_row_weights: bool, swiglu_alpha: float,
            swiglu_limit: float, decode: str, row_tiles: bool, has_written: bool):
  bm, bn = cfg.block_m, cfg.block_n
  out_ref = refs[-1]
  refs = refs[:-2] if has_written else refs[:-1]  # the written input aliases the output
  tile, col_tile = pl.program_id(0), pl.program_id(1)
  if cfg.columns_first:
    col_tile, tile = tile, col_tile
  if row_tiles:  # tile p is row p alone (``row_experts``); an expert outside [0, E) gives zeros
    experts_ref, x_ref, values_ref, scales_ref, *refs = refs
    group = sched.valid_experts(experts_ref[tile], num_experts)
    start, end = tile, tile + 1
    window = jnp.minimum(tile, out_ref.shape[-2] - bm)
  else:
    group_ref, start_ref, end_ref, window_ref, x_ref, values_ref, scales_ref, *refs = refs
    group, start, end, window = group_ref[tile], start_ref[tile], end_ref[tile], window_ref[tile]
  tables = None
  if decode == "lut":
    tables_ref, refs = refs[0], refs[1:]
    tables = [tables_ref[i] for i in range(3)]  # [bn, 8] each
  bias_ref = refs[0] if has_bias else None
  row_weights_ref = refs[has_bias] if has_row_weights else None
  is_expert = group < num_experts  # else a tail tile (rows past the groups) or an unused one
  has_work = (is_expert & (start < end)).astype(jnp.int32)
  group = jnp.minimum(group, num_experts - 1)  # keeps every load in bounds
  tile_rows = window + lax.broadcasted_iota(jnp.int32, (bm,), 0)  # [bm]: x's and out's rows
  # Fewer rows than one tile (decode): the rows past x's end re-read its last row (their output
  # is masked) rather than x being padded up to a tile by one more kernel before this one.
  x_len = x_ref.shape[0]
  rows_read = pl.ds(window, bm) if x_len >= bm else jnp.minimum(tile_rows, x_len - 1)
  # A program owns out_bn output columns. The last program slides back to stay in bounds; it
  # writes only the columns it owns.
  out_bn = cfg.out_block_n(bool(swiglu_half))
  paired = out_bn < bn  # gate_up's glu rows and their linear rows in one block (paired_halves)
  owned = col_tile * out_bn
  col0 = jnp.minimum(owned, out_cols - out_bn)
  row_mask = (tile_rows >= start) & (tile_rows < end)
  out_columns = col0 + lax.broadcasted_iota(jnp.int32, (out_bn,), 0)
  mask = row_mask[:, None] & (out_columns >= owned)[None, :]  # [bm, out_bn]: in the tile, owned

  # The bn weight rows of each dot, as an index: the output columns' rows, then for the fused
  # SwiGLU their linear halves (the columns' own rows being the glu halves); with paired halves
  # one dot, over its out_bn glu rows and then their out_bn linear rows.
  if paired:
    lane = lax.broadcasted_iota(jnp.int32, (bn,), 0)
    weight_rows = (col0 + lane % out_bn + lane // out_bn * swiglu_half,)
  else:
    firsts = (col0, col0 + swiglu_half) if swiglu_half else (col0,)
    weight_rows = tuple(pl.ds(row0, bn) for row0 in firsts)

  def row_scales(kt, w_rows):  # the [bn] uint8 scales of the low and the high half
    return scales_ref[group, 2 * kt, w_rows], scales_ref[group, 2 * kt + 1, w_rows]

  def scales_of(kt):
    return tuple(row_scales(kt, w_rows) for w_rows in weight_rows)

  def load_x(kt):  # x's two halves under the tile: [bm, 32] bf16 each
    k0 = pl.multiple_of(kt * K_TILE, K_TILE)
    return (x_ref[rows_read, pl.ds(k0, HALF_TILE)],
            x_ref[rows_read, pl.ds(k0 + HALF_TILE, HALF_TILE)])

  def load_block(kt, i, scales=None):  # weight block i's [bn, 32] u8 bytes and its scales
    w_rows = weight_rows[i]
    return values_ref[group, kt, w_rows, :], scales or row_scales(kt, w_rows)

  def dot_block(acc, x, block):
    (x_low, x_high), (packed, scales) = x, block
    w_low, w_high = _decode_tile(packed, *scales, decode, tables)
    if cfg.accumulate_in_mma:
      acc = dot_accumulate(acc, w_low, x_low, trans_b=True)  # [bn, bm] f32
      return dot_accumulate(acc, w_high, x_high, trans_b=True)
    return (acc + pltriton.dot(w_low, x_low, trans_b=True)
            + pltriton.dot(w_high, x_high, trans_b=True))

  def tile_loads(kt):  # everything tile kt's dots read: x's halves and each weight block
    return load_x(kt), tuple(load_block(kt, i) for i in range(len(weight_rows)))

  def dot_tile(accs, loaded):
    x, blocks = loaded
    return tuple(dot_block(acc, x, block) for acc, block in zip(accs, blocks))

  def loop(first, steps):
    """``steps`` K tiles from ``first``, summed; ``steps <= 0`` runs none, and its loads stay in
    bounds."""
    in_bounds = jnp.minimum(first, num_k_tiles - 1)
    final = jnp.clip(first + steps - 1, in_bounds, num_k_tiles - 1)
    if cfg.prefetch:
      # Tiles kt + 1 .. kt + prefetch are in flight while tile kt is decoded and multiplied,
      # carried in registers from step to step (`KernelConfig.prefetch`). Tiles past the range
      # re-read its last.
      ahead = lambda kt: tile_loads(jnp.minimum(kt, final))

      def step(kt, carry):
        accs, loaded = carry
        return dot_tile(accs, loaded[0]), (*loaded[1:], ahead(kt + cfg.prefetch))
      carry = zero_accs(), tuple(ahead(in_bounds + j) for j in range(cfg.prefetch))
    else:
      # Each block's loads beside its own dot, not `tile_loads` first: the order in which the
      # TABLE's larger tiles (no prefetch) were compiled and timed.
      def step(kt, carry):
        accs, prefetched = carry
        current = (None,) * len(weight_rows)  # load_block loads the scales itself
        if cfg.prefetch_scales:  # the next tile's scales now; they have a whole step to arrive
          current, prefetched = prefetched, scales_of(jnp.minimum(kt + 1, final))
        x = load_x(kt)
        return tuple(dot_block(acc, x, load_block(kt, i, current[i]))
                     for i, acc in enumerate(accs)), prefetched
      carry = zero_accs(), (scales_of(in_bounds) if cfg.prefetch_scales else None)
    return lax.fori_loop(0, steps, lambda i, carry: step(first + i, carry), carry)[0]

  def straight_line(first, count):
    """``count`` K tiles from ``first`` as straight-line code, tile u + prefetch's loads written
    before tile u's dot: a dot stores x to shared memory and waits on a barrier, and no load is
    moved above a barrier, so with no prefetch each tile waits out one memory latency."""
    loaded = [tile_loads(first + u) for u in range(min(cfg.prefetch, count))]
    accs = zero_accs()
    for u in range(count):
      if u + cfg.prefetch < count:
        loaded.append(tile_loads(first + u + cfg.prefetch))
      accs = dot_tile(accs, loaded[u])
    return accs

  def zero_accs():
    return tuple(jnp.zeros((bn, bm), jnp.float32) for _ in weight_rows)

  # Split K: this program sums its share of the K tiles and stores the raw float32 sums for
  # every weight row it read; the caller adds the shares and applies the epilogue.
  split_k = cfg.k_splits > 1
  per_split = pl.cdiv(num_k_tiles, cfg.k_splits)
  first = pl.program_id(2) * per_split if split_k else 0
  if split_k and cfg.unroll_split and num_k_tiles % cfg.k_splits == 0:
    accs = lax.cond(has_work != 0, lambda: straight_line(first, per_split), zero_accs)
  elif split_k:  # a split past the last tile (more splits than tiles) runs no step
    accs = loop(first, has_work * (jnp.minimum(first + per_split, num_k_tiles) - first))
  else:
    # No branch around the K loop (Triton pipelines a loop only outside scf.if): tiles with no
    # rows, and tail tiles (rows past sum(group_sizes), defined as zero), run one step, whose
    # output is masked or zeroed. Not zero steps: that path's zeroed accumulators would meet the
    # loop's exit before its last wgmma wait, and ptxas then serializes every wgmma of the
    # kernel (C7515; in the 128 x 256 tiles of TABLE's last row, a wait after each of the 8 a
    # K tile).
    accs = loop(0, jnp.maximum(has_work * num_k_tiles, 1))
  if split_k:
    pieces = zip(accs, weight_rows)
    if paired:  # the glu and the linear half, each to its own contiguous columns
      pieces = zip(jnp.split(accs[0], 2), (pl.ds(col0, out_bn), pl.ds(col0 + swiglu_half, out_bn)))
    for sums, columns in pieces:
      pltriton.store(out_ref.at[pl.program_id(2), pl.ds(window, bm), columns], sums.T, mask=mask)
    return
  if has_bias:
    accs = tuple(acc + bias_ref[group, w_rows][:, None] for acc, w_rows in zip(accs, weight_rows))
  if paired:
    out = swiglu(*jnp.split(accs[0], 2), alpha=swiglu_alpha, limit=swiglu_limit)
  elif swiglu_half:
    out = swiglu(*accs, alpha=swiglu_alpha, limit=swiglu_limit)
  else:
    [out] = accs
  if has_row_weights:
    out = out * row_weights_ref[rows_read].astype(jnp.float32)[None, :]
  out = jnp.where(is_expert, out, 0.0)
  pltriton.store(out_ref.at[pl.ds(window, bm), pl.ds(col0, out_bn)],
                 out.T.astype(out_ref.dtype), mask=mask)


@functools.partial(jax.jit, static_argnames=("cfg", "activation", "out_dtype", "interpret",
                                             "swiglu_alpha", "swiglu_limit", "poison"))
def grouped_matmul_pallas(x, w: PackedMXFP4, group_sizes, row_weights=None, row_experts=None, *,
                          cfg: KernelConfig, activation: str | None, out_dtype, interpret: bool,
                          swiglu_alpha: float, swiglu_limit: float, poison: bool = False):
  """Arguments already checked by `mxfp4_jax.kernels.grouped_matmul`; see there. ``poison``:
  the first call writes into a NaN-filled buffer (`poisoned_outputs`)."""
  num_rows = x.shape[0]
  out_cols = w.out_features // 2 if activation == "swiglu" else w.out_features
  # Tiny row counts: the output has at least one tile of rows, so that every store stays in
  # bounds; the kernel reads x's rows clamped to its end.
  padded_rows = max(num_rows, cfg.block_m)
  x = x.astype(jnp.bfloat16)
  if x.shape[1] != w.padded_in_features:
    x = jnp.pad(x, ((0, 0), (0, w.padded_in_features - x.shape[1])))

  decode = "integer" if interpret else cfg.decode  # interpret mode cannot run PTX
  values, tables = w.values, []
  if decode == "lut":
    # A row's K-tile bytes as 8 words (a bitcast: no copy in the timings), and the lookup
    # tables' registers, one per word a program decodes.
    values = lax.bitcast_convert_type(values.reshape(*values.shape[:-1], -1, 4), jnp.uint32)
    tables = [jnp.broadcast_to(jnp.array(fmt.LUT_REGISTERS, jnp.uint32)[:, None, None],
                               (3, cfg.block_n, values.shape[-1]))]
  operands = [x, values, w.scales, *tables]
  # Split K leaves bias and row weights to the epilogue that runs on the summed shares.
  split_k = cfg.k_splits > 1
  has_bias = w.bias is not None and not split_k
  has_row_weights = row_weights is not None and not split_k
  operands += [w.bias] if has_bias else []
  operands += [row_weights.astype(jnp.float32)] if has_row_weights else []
  out_shape = jax.ShapeDtypeStruct((padded_rows, out_cols), out_dtype)
  if split_k:
    out_shape = jax.ShapeDtypeStruct((cfg.k_splits, padded_rows, w.out_features), jnp.float32)

  def run(schedule, cfg, written=None, remainders=False):
    """One pallas_call over the tiles of ``schedule``; with ``written`` (an earlier call's
    output, or the poison) it writes its tiles' rows into that buffer and leaves the others as
    they are."""
    kernel = functools.partial(
        _kernel, cfg=cfg, num_experts=w.num_experts, num_k_tiles=w.values.shape[1],
        out_cols=out_cols, swiglu_half=out_cols if activation == "swiglu" else 0,
        has_bias=has_bias, has_row_weights=has_row_weights,
        swiglu_alpha=swiglu_alpha, swiglu_limit=swiglu_limit,
        decode=decode, row_tiles=row_experts is not None, has_written=written is not None)
    out_bn = cfg.out_block_n(activation == "swiglu")
    grid = (schedule[0].shape[0], pl.cdiv(out_cols, out_bn))
    grid = grid[::-1] if cfg.columns_first else grid  # axis 0 varies fastest in launch order
    grid += (cfg.k_splits,) if split_k else ()
    args = [*schedule, *operands] + ([written] if written is not None else [])
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=grid,
        input_output_aliases={len(args) - 1: 0} if written is not None else {},
        compiler_params=pltriton.CompilerParams(num_warps=cfg.num_warps,
                                                num_stages=cfg.num_stages),
        interpret=interpret,
        name="mxfp4_grouped_matmul" + ("_swiglu" if activation == "swiglu" else "")
        + ("_split_k" if split_k else "") + ("_remainders" if remainders else ""),
    )(*args)

  as_list = lambda t: [t.group, t.start, t.end, t.window]
  poisoned = jnp.full(out_shape.shape, jnp.nan, out_shape.dtype) if poison else None
  if row_experts is not None:
    out = run([row_experts.astype(jnp.int32)], cfg, poisoned)
  elif 0 < cfg.remainder_block_m < cfg.block_m and not split_k:
    # Each group's last few rows (at most remainder_block_m past its full tiles) get a tile of
    # their own size, in a second call, instead of a mostly empty block_m tile.
    sizes = sched.clip_group_sizes(group_sizes, num_rows)
    leave = sched.remainders(sizes, cfg.block_m, cfg.remainder_block_m)
    out = run(as_list(sched.tile_schedule(sizes, num_rows, cfg.block_m, padded_rows, leave)), cfg,
              poisoned)
    # A tile's window is where it reads x (x holds at least a tile of rows, else the kernel
    # clamps its reads) and writes the output: so the small tiles slide within x's rows, not
    # within the first call's padded_rows.
    rest = sched.remainder_schedule(sizes, leave, num_rows, cfg.remainder_block_m,
                                    max(num_rows, cfg.remainder_block_m))
    out = run(as_list(rest), dataclasses.replace(cfg, block_m=cfg.remainder_block_m,
                                                 remainder_block_m=0), out, remainders=True)
  else:
    out = run(as_list(sched.tile_schedule(group_sizes, num_rows, cfg.block_m, padded_rows)), cfg,
              poisoned)
  if split_k:
    expert = (expert_of_row(group_sizes, num_rows) if row_experts is None
              else sched.valid_experts(row_experts, w.num_experts))
    return moe_epilogue(out.sum(axis=0)[:num_rows], w, expert, row_weights,
                        activation=activation, out_dtype=out_dtype, swiglu_alpha=swiglu_alpha,
                        swiglu_limit=swiglu_limit)
  return out[:num_rows] if padded_rows != num_rows else out
