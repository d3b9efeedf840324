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

from configs import kernel_fingerprint as fingerprint_config
from mxfp4_jax.kernels import tuning

pytest.importorskip("triton")
from experiments import hopper, kernel_fingerprint  # noqa: E402


def _cases():
  """One (name, shape, P, one tile a row, config) for each config `pick_config` gives
  GPT-OSS's expert shapes at `kernel_fingerprint`'s P (decode sizes to prefills, grouped rows
  and one tile a row); gate_up and down both for the paired-halves tiles."""
  config = fingerprint_config.get_config()
  config.variant_shapes = ""  # the configs as picked, not each row's variants
  cases = {}
  for case in kernel_fingerprint.cases(config):
    _, shape, _, row_experts, picked = case
    cases.setdefault((picked, row_experts, picked.paired_halves and shape[3]), case)
  return list(cases.values())


CASES = _cases()


def test_the_cases_cover_the_table():
  """Each TABLE row is among the cases (as `pick_config` gives it: K split for 16-row tiles)."""
  picked = {dataclasses.replace(config, k_splits=1) for *_, config in CASES}
  assert picked >= {config for _, config in tuning.TABLE}


@pytest.mark.parametrize("shape, rows, one_row_tiles, config", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_table_kernels_keep_wgmma_async(tmp_path, shape, rows, one_row_tiles, config):
  kernels, _ = hopper.lower_for_hopper(shape, rows, one_row_tiles, config)
  assert kernels, "no kernel was lowered"
  for i, ttir in enumerate(kernels):  # the main call, then any remainder tiles' call
    folder = tmp_path / str(i)
    folder.mkdir()
    compiled = hopper.compile_sm90(ttir, config.num_warps, config.num_stages, folder)
    assert "wgmma.mma_async" in compiled.asm["ptx"], "the kernel has no wgmma to check"
    assert hopper.wgmma_serialized(compiled.asm["ptx"], folder) is None, config
