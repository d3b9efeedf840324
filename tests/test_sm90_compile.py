"""Every kernel the TABLE picks for the model's shapes, compiled for the H100 (sm_90) without a GPU:
ptxas keeps its wgmmas asynchronous.

ptxas serializes a kernel's wgmmas when it cannot prove them safe to overlap, and says so only as
a note under ``-v`` (`experiments.hopper.wgmma_serialized`). Each wgmma then waits for the one
before it, and the tensor cores idle while the warps decode the next weights. The K loop's
zero-trip path did this to TABLE's last row: its zeroed accumulators reached the wait after the
loop. Needs the triton package (Triton's compiler and ptxas), part of the test extra.
"""

import dataclasses

import pytest

from configs.bench_kernel import SHAPES
from mxfp4_jax.kernels import tuning
from mxfp4_jax.mxfp4.layout import K_TILE

pytest.importorskip("triton")
from experiments import hopper  # noqa: E402


def _cases():
  """One (shape, P, one tile a row) for each config `pick_config` gives GPT-OSS's expert
  shapes, decode sizes to prefills; gate_up and down both for the largest tiles."""
  cases = {}
  for shape, (num_experts, k, n, activation) in SHAPES.items():
    for rows in (1, 4, 32, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768):
      one_row_tiles = tuning.one_row_tiles_suit(rows, num_experts)
      config = tuning.pick_config(rows, num_experts, n // 2 if activation else n,
                                  -(-k // K_TILE), one_tile_per_row=one_row_tiles)
      key = (config, one_row_tiles, activation if config.paired_halves else None)
      cases.setdefault(key, (shape, rows, one_row_tiles, config))
  return list(cases.values())


CASES = _cases()


def test_the_cases_cover_the_table():
  """Each TABLE row is among the cases (as `pick_config` gives it: K split for 16-row tiles)."""
  picked = {dataclasses.replace(config, k_splits=1) for *_, config in CASES}
  assert picked >= {config for _, config in tuning.TABLE}


@pytest.mark.parametrize("shape, rows, one_row_tiles, config", CASES,
                         ids=[f"{c[0]}-P{c[1]}" for c in CASES])
def test_table_kernels_keep_wgmma_async(tmp_path, shape, rows, one_row_tiles, config):
  kernels, _ = hopper.lower_for_hopper(SHAPES[shape], rows, one_row_tiles, config)
  assert kernels, "no kernel was lowered"
  for i, ttir in enumerate(kernels):  # the main call, then any remainder tiles' call
    folder = tmp_path / str(i)
    folder.mkdir()
    compiled = hopper.compile_sm90(ttir, config.num_warps, config.num_stages, folder)
    assert "wgmma.mma_async" in compiled.asm["ptx"], "the kernel has no wgmma to check"
    assert hopper.wgmma_serialized(compiled.asm["ptx"], folder) is None, config
