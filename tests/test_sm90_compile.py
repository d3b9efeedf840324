"""Every kernel the TABLE picks for the model's shapes, compiled for the H100 (sm_90) without a GPU:
ptxas keeps its wgmmas asynchronous.

ptxas serializes a kernel's wgmmas when it cannot prove them safe to overlap, and says so only as
a note under ``-v`` (`experiments.hopper.wgmma_serialized`). Each wgmma then waits for the one
before it, and the tensor cores idle while the warps decode the next weights. The K loop's
zero-trip path did this to TABLE's last row: its zeroed accumulators reached the wait after the
loop. Needs the triton package (Triton's compiler and ptxas), part of the test extra.
"""

import pytest

from configs.bench_kernel import SHAPES
from mxfp4_jax.kernels import tuning
from mxfp4_jax.mxfp4.layout import K_TILE

pytest.importorskip("triton")
hopper = pytest.importorskip("experiments.hopper")

# (shape, P, one tile a row): between them every config pick_config gives the model's calls.
CASES = [
    ("20b_gate_up", 4, True),  # decode: one-row tiles, 9 straight splits
    ("120b_gate_up", 32, True),  # 5 straight splits
    ("20b_gate_up", 64, False),  # 16-row tiles, 5 straight splits
    ("20b_gate_up", 1024, False),  # 32-row tiles, the K loop
    ("20b_down", 2048, False),  # 64-row tiles
    ("20b_gate_up", 4096, False),  # 128-row tiles by 64 columns, 32-row remainders
    ("20b_gate_up", 16384, False),  # the last row: 128 by 256, paired halves
    ("20b_down", 16384, False),
]


@pytest.mark.parametrize("shape, rows, one_row_tiles", CASES)
def test_table_kernels_keep_wgmma_async(tmp_path, shape, rows, one_row_tiles):
  num_experts, k, n, activation = SHAPES[shape]
  out_cols = n // 2 if activation else n
  config = tuning.pick_config(rows, num_experts, out_cols, -(-k // K_TILE),
                              one_tile_per_row=one_row_tiles)
  kernels, _ = hopper.lower_for_hopper(SHAPES[shape], rows, one_row_tiles, config)
  assert kernels, "no kernel was lowered"
  for i, ttir in enumerate(kernels):  # the main call, then any remainder tiles' call
    folder = tmp_path / str(i)
    folder.mkdir()
    compiled = hopper.compile_sm90(ttir, config.num_warps, config.num_stages, folder)
    assert "wgmma.mma_async" in compiled.asm["ptx"], "the kernel has no wgmma to check"
    assert hopper.wgmma_serialized(compiled.asm["ptx"], folder) is None, (shape, rows, config)
