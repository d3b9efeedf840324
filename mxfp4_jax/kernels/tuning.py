"""Block sizes and launch parameters of the grouped matmul, by regime (rows per active expert).

The table's block shapes come from ``python -m experiments.tune_kernel`` sweeps on the H100
(the block shapes with the integer decode); the decode, accumulation, scale-prefetch and split
choices were then timed one at a time with ``experiments.bench_kernel --config.kernel_options``
and ``tune_kernel``'s split options: the prefill rows' decode and accumulation and the first
row's prefetch and split target on an H200, and the prefill rows' remainder tiles end to end
(``bench_e2e --config.bench.kernel_options=remainder_block_m=32``); their launch order and
256-row tiles by a ``tune_kernel`` sweep of ``columns_first`` and ``paired_halves`` on an H200,
then end to end; the largest tiles' warps and column blocks by a sweep on the H100, then end
to end; where the largest tiles take over from the 128-row ones, and their shape (128 rows by
256 columns), end to end on the H100, with the other config forced by
``--config.bench.kernel_options``. BENCHMARKS.md records each of those runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

from mxfp4_jax.argcheck import is_int
from mxfp4_jax.kernels.triton_ops import check_launch, is_block


DECODES = ("integer", "bf16x2", "lut")


@dataclasses.dataclass(frozen=True)
class KernelConfig:
  block_m: int  # rows of x per tile (tensor-core N side after the operand swap)
  block_n: int  # weight rows a dot decodes (output columns a tile writes: `out_block_n`)
  num_warps: int
  num_stages: int
  # Programs sharing one output tile's K range; XLA adds their f32 sums after the call. (Adding
  # them in the kernel, in the last split to arrive by an atomic count, lost 0.5-7% at 20b
  # batch 1-64 in three forms: BENCHMARKS.md, seventeenth and eighteenth rounds.)
  k_splits: int = 1
  # "integer": `format.e2m1_to_bf16_bits`; "bf16x2": inline PTX, two values per op
  # (`format.e2m1_bf16x2_ptx`; about 45% fewer instructions in the K loop); "lut": inline PTX,
  # table lookups by `prmt` on 32-bit words (`format.e2m1_lut_ptx`, 21 instructions for 8
  # values against 20; the decoded tile reaches the dot through shared memory, where bf16x2's
  # stays in registers).
  # The PTX decodes run on GPUs only; interpret mode falls back to "integer", the same bits.
  decode: str = "integer"
  # Accumulate in the wgmma itself (`triton_ops.dot_accumulate`) rather than dot-then-add: no
  # FADD pass per dot and no register spills at block_m=128 in the disassembly.
  accumulate_in_mma: bool = False
  # Load the next K tile's scales one step ahead, in the K loop without `prefetch`: there the
  # values and x come through Triton's cp.async pipeline, the scale bytes as plain loads whose
  # latency each step otherwise waits out. Straight-line splits ignore it (`prefetch` places
  # their loads).
  prefetch_scales: bool = False
  # With k_splits > 1 dividing the K tiles: each split's tiles as straight-line code rather than
  # a loop (a decode-sized split has 5-9 tiles, too few for the loop pipeliner's prologue to pay).
  unroll_split: bool = False
  # K tiles whose loads (weight bytes, scales, x) are issued before the current tile's dot and
  # held in registers until theirs. Straight-line splits have no pipeliner: without it each tile
  # waits out one memory latency, as no load is moved above a dot's fence (sm_90 disassembly);
  # with prefetch >= their tiles - 1 every load is issued before the first dot. Costs registers.
  # In the K loop, where Triton's cp.async pipeline brings the values and x without it, the
  # carried bytes cost a register-layout change per step (sm_90: 32 SHFL + 64 SEL); prefetch > 0
  # there subsumes prefetch_scales.
  prefetch: int = 0
  # Launch order: a row tile's column tiles one after another (grid axis 0, which varies
  # fastest), instead of every row tile's first column tile, then every row tile's second, ...
  # The programs in flight then share a few row tiles, so each tile of x comes from HBM once
  # and its expert's weights stay in L2 across the expert's row tiles. Row tiles first, a
  # prefill-sized x (94 MB at P = 16384, K = 2880) is swept once per column tile, more than the
  # 50 MB L2 holds. H200, 20b, P=16384: gate_up 1.690 -> 1.454 ms, down 0.890 -> 0.699 ms.
  columns_first: bool = False
  # The fused SwiGLU's glu and linear rows in one weight block and one dot: block_n / 2 glu rows,
  # then their block_n / 2 linear rows, for block_n / 2 output columns, instead of a block_n-row
  # block and dot for each. A program then holds one accumulator of [block_n, block_m] instead
  # of two, so that block_m can double in the same registers and every decoded weight feeds
  # twice the rows. No effect without the fused SwiGLU. H200, 20b gate_up, columns first:
  # at 128-row tiles 2-14% slower (P=4096-32768); it is what lets 256-row tiles run (P=16384
  # 1.320 ms against 1.454 at 128 rows).
  paired_halves: bool = False
  # Grouped rows (not one-row tiles), no split, block_m above it: each group's rows past its
  # full block_m tiles, when at most this many, go to a second call with tiles of this size
  # (0: off). A tile costs its expert's whole weight decode whatever it holds, and a prefill's
  # groups often end a few rows past a full tile.
  remainder_block_m: int = 0

  def out_block_n(self, swiglu: bool) -> int:
    """Output columns a weight block (one dot) feeds."""
    return self.block_n // 2 if swiglu and self.paired_halves else self.block_n

  def __post_init__(self):
    if self.decode not in DECODES:
      raise ValueError(f"KernelConfig.decode must be one of {DECODES}, got {self.decode!r}")
    for f in dataclasses.fields(self):
      kind = {"int": "an int", "bool": "a bool"}.get(f.type)
      if kind and type(getattr(self, f.name)).__name__ != f.type:  # not a bool for an int
        raise TypeError(f"KernelConfig.{f.name} must be {kind}, got {getattr(self, f.name)!r}")
    check_launch(self.num_warps, self.num_stages, owner="KernelConfig.", k_splits=self.k_splits)
    if self.prefetch < 0:
      raise ValueError(f"KernelConfig.prefetch must be >= 0, got {self.prefetch}")
    rest = self.remainder_block_m
    if rest and not is_block(rest):
      raise ValueError(f"KernelConfig.remainder_block_m={rest} must be 0 or a power of two >= 16")
    for name in ("block_m", "block_n"):
      value = getattr(self, name)
      if not is_block(value):
        raise ValueError(f"KernelConfig.{name}={value} must be a power of two >= 16")


# (largest expected rows per active expert, config); the last row covers everything larger.
TABLE: tuple[tuple[int, KernelConfig], ...] = (
    # 20b gate_up, H100 sweep of 2026-11-23 (BENCHMARKS.md): P=4 0.134 ms, P=64 0.201 ms
    # Straight-line splits, P=1 with 100 MB of weights rotated: 9 splits 0.0505 -> 0.0400 ms,
    # 5 splits 0.0460 -> 0.0413 ms. One tile ahead (H200, 2026-12-03, one-row tiles, 9 straight
    # splits): P=4 gate_up 0.0237 -> 0.0227 ms, down 0.0158 -> 0.0137 ms.
    (16, KernelConfig(block_m=16, block_n=64, num_warps=4, num_stages=4, decode="bf16x2",
                      accumulate_in_mma=True, unroll_split=True, prefetch=1)),
    # P=1024 (32 rows per expert): 0.330 ms; block_m=64 without in-MMA accumulation, 0.322 ms
    (32, KernelConfig(block_m=32, block_n=64, num_warps=4, num_stages=4, decode="bf16x2",
                      accumulate_in_mma=True)),
    (64, KernelConfig(block_m=64, block_n=64, num_warps=4, num_stages=4, decode="bf16x2")),
    # 65-144 rows per expert (prefill 1k) take the row below: without in-MMA accumulation the
    # kernel alone ran 5-17% faster at P=4096, but prefill 1k did not (H200, 2026-12-04,
    # BENCHMARKS.md fifteenth round).
    # P=16384 (512 rows per expert; this row took them before the 256-row row was added):
    # 1.786 ms (304 TF/s) on the H100 with decode="bf16x2"; H200, 2026-12-02:
    # bf16x2 1.746 ms, lut 1.691 ms (321 TF/s). H200, 2026-12-04, with the one-multiply
    # bf16x2 decode, gate_up / down: lut 1.664 / 0.937 ms, bf16x2 in the MMA 1.610 / 0.839.
    # Remainder tiles of 32 rows (H200, 2026-12-04, 20b prefill 1k end to end, medians of 11):
    # 39,295 and 39,232 tok/s against 36,153-36,651 without; with 64, 36,805 and 36,867.
    # Columns first (H200, 2026-12-05, P=4096, 128 rows per expert): gate_up 0.513 -> 0.483 ms,
    # down 0.304 -> 0.288 ms.
    # Up to 144 rows, not 128: an expert a few rows past 128 takes a 128-row tile and a 32-row
    # remainder rather than one mostly empty 256-row tile. H100, 2026-12-06 (BENCHMARKS.md,
    # thirty-first round), prefill, this row against the last, alternated: 20b at 144 rows per
    # expert (1,152 tokens) +4.6%, 120b at 136 and 144 rows +15.5% and +8.6%; even at 152 rows
    # (20b); at 160 the last row wins (20b by 4.6%, 120b by 1.5%). Measured against the last
    # row's 256-row tiles: against its 128-row tiles (since 2026-12-07), which split such an
    # expert the same way, the boundary has not been timed again.
    (144, KernelConfig(block_m=128, block_n=64, num_warps=4, num_stages=4, decode="bf16x2",
                       accumulate_in_mma=True, prefetch_scales=True, remainder_block_m=32,
                       columns_first=True)),
    # H200, 2026-12-05, P=16384 / 32768 (512 / 1024 rows per expert), against the row above
    # without columns_first: gate_up 1.690 -> 1.320 / 3.537 -> 2.524 ms (256-row tiles take
    # paired halves: unpaired they spill), down 0.890 -> 0.656 / 2.059 -> 1.297 ms (4 stages of
    # 256-row tiles leave one program an SM: 1.106 ms).
    # H100, 2026-12-05, P=16384, 8 warps over 128-column blocks against 4 over 64: gate_up
    # 1.378 -> 1.238 ms, down 0.735 -> 0.657 ms (the H200 had them within 1% for gate_up).
    # H100, 2026-12-07 (BENCHMARKS.md, forty-fourth round), 128-row tiles by 256-column blocks
    # against 256 by 128: the kernel alone at P=16384 gate_up 1.2859 against 1.2639 ms, down
    # 0.7160 against 0.7145 (3 stages; 4: 0.7077 for 256 by 128); end to end, prefill 20b 2k
    # +3.3%, 4k +0.8%, 8k +1.2-1.8%, 120b 8k +5.8% (likely less of a tile empty where the
    # router loads experts unevenly; not measured). Those figures are with every wgmma of these
    # blocks serialized by ptxas, which the K loop's zero-trip path caused (since removed:
    # `pallas_grouped._kernel`; tests/test_sm90_compile.py); 256 by 128 was not serialized.
    (1 << 62, KernelConfig(block_m=128, block_n=256, num_warps=8, num_stages=3, decode="bf16x2",
                           accumulate_in_mma=True, prefetch_scales=True, remainder_block_m=32,
                           columns_first=True, paired_halves=True)),
)


def one_row_tiles_suit(num_rows: int, num_experts: int) -> bool:
  """Whether ``num_rows`` token-expert rows run best one kernel tile each (`grouped_matmul`'s
  ``row_experts``, no sort): at most one row per two experts, as in a decode step."""
  return num_rows <= num_experts // 2


def rows_per_expert(num_rows: int, num_experts: int) -> float:
  """Expected rows per expert that gets any: every row lands on one of min(E, P) experts."""
  return num_rows / max(1, min(num_experts, num_rows))


# Split K when few programs would have work, for decode-sized (16-row) tiles: decode rows touch a
# handful of experts, and each program's K loop is a chain of dependent latencies that more
# programs in flight overlap.
# H100, 20b gate_up, bm=16 bn=64, straight-line splits (BENCHMARKS.md): P=1 (45 programs) 9
# splits 0.040 ms, 5 splits 0.041, 3 splits 0.051; P=16 (630 programs) 3 splits 0.096 ms against
# 0.108 unsplit and 0.107 with 5.
# H200, 2026-12-03, one-row tiles (BENCHMARKS.md): P=32 20b gate_up, 5 straight splits 0.140 ms
# against 0.219 unsplit; down, 3 splits 0.073 against 0.094.
# Larger tiles keep K whole: their float32 partial sums are prefill-sized, written by the kernel
# and read back by XLA's sum (3 splits of 20b gate_up at P = 8,192: 566 MB). H100, 2026-12-06
# (BENCHMARKS.md, thirtieth round), 256-row tiles at 192 / 256 rows per expert, 3 splits -> 1:
# gate_up 1.099 -> 0.628 / 1.475 -> 0.735 ms, down 0.522 -> 0.346 / 0.699 -> 0.416 ms; prefill
# of 2k tokens 31,885 and 31,970 -> 43,801 and 42,789 tok/s (gate_up), then 45,409 and 45,273 ->
# 51,733 and 51,936 (down).
SPLIT_K_TARGET_PROGRAMS = 7200
MAX_K_SPLITS = 9
MIN_K_TILES_PER_SPLIT = 4
# Splits may be this short whatever the program count (a split count that divides the K tiles
# still comes first: 44 tiles take 4 straight splits of 11, not a 9-split loop; at 45, GPT-OSS's,
# the floor holds). The target alone leaves 120b's one-row tiles at P = 64 (2,880 programs) a
# 2-split loop and its sorted 16-row tiles at P = 128-2048 (5,760 programs) unsplit; 20b's calls
# are unchanged (1,440 programs or fewer). Kernel alone, H100, 2026-12-05 (BENCHMARKS.md,
# twenty-sixth round): 120b gate_up at P = 32, one-row tiles, unsplit loop 0.2265 ms, 2-split
# loop 0.154, 5 straight splits 0.131.
# End to end, H100, 2026-12-06 (twenty-eighth round), 120b decode: batch 16 886 -> 952 tok/s,
# batch 64 1,963 -> 1,996.
MAX_K_TILES_PER_SPLIT = 9


def narrowed_block_n(block_n: int, out_cols: int) -> int:
  """``block_n`` halved (down to 16) until it is no wider than the ``out_cols`` outputs."""
  while block_n > 16 and block_n > out_cols:
    block_n //= 2
  return block_n


def pick_config(num_rows: int, num_experts: int, out_cols: int, k_tiles: int,
                one_tile_per_row: bool = False) -> KernelConfig:
  """The TABLE row for the expected rows per active expert, block_n narrowed to the output, and,
  for 16-row tiles, K split ``k_splits`` ways while that keeps the programs with work within
  `SPLIT_K_TARGET_PROGRAMS`, or aiming at splits of `MAX_K_TILES_PER_SPLIT` tiles. A split
  count that divides the K tiles is preferred, so that the splits run as straight-line code
  (`KernelConfig.unroll_split`).

  ``k_tiles``: 64-value K tiles of the weight (`PackedMXFP4.values.shape[1]`).
  ``one_tile_per_row``: the rows take a tile each (`grouped_matmul`'s ``row_experts``), picked
  for as if each row had an expert of its own.
  """
  sizes = dict(num_rows=num_rows, num_experts=num_experts, out_cols=out_cols, k_tiles=k_tiles)
  for name, size in sizes.items():
    least = 0 if name == "num_rows" else 1
    if not is_int(size) or size < least:
      raise ValueError(f"pick_config: {name} must be an int >= {least}, got {size!r}")
  if one_tile_per_row:
    num_experts = max(num_rows, 1)
  m = rows_per_expert(num_rows, num_experts)
  cfg = next(c for limit, c in TABLE if m <= limit)
  block_n = narrowed_block_n(cfg.block_n, out_cols)
  k_splits = 1
  if cfg.block_m == 16:  # no paired halves in these rows: a program writes block_n columns
    programs = min(num_experts, num_rows) * math.ceil(m / 16) * math.ceil(out_cols / block_n)
    most = max(SPLIT_K_TARGET_PROGRAMS // max(1, programs), -(-k_tiles // MAX_K_TILES_PER_SPLIT))
    most = max(1, min(most, MAX_K_SPLITS, k_tiles // MIN_K_TILES_PER_SPLIT))
    dividing = [d for d in range(2, most + 1) if k_tiles % d == 0]
    k_splits = max(dividing, default=most)
  return dataclasses.replace(cfg, **{"block_n": block_n, "k_splits": k_splits, **_overrides})


_overrides: dict = {}


@contextlib.contextmanager
def overridden(**fields):
  """Within the block, every config `pick_config` returns has ``fields`` replaced (e.g.
  ``overridden(decode="lut")``): a kernel option tried across a whole model, whose calls pick
  their configs as they are traced. Bad fields fail here, with KernelConfig's own errors."""
  dataclasses.replace(TABLE[0][1], **fields)
  previous = dict(_overrides)
  _overrides.update(fields)
  try:
    yield
  finally:
    _overrides.clear()
    _overrides.update(previous)
