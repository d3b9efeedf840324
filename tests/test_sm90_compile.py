"""Every kernel the TABLE picks for the model's shapes, and the prefill's flash attention,
compiled for the H100 (sm_90) without a GPU: ptxas keeps their wgmmas asynchronous, and no
register spills to local memory.

ptxas serializes a kernel's wgmmas when it cannot prove them safe to overlap, and says so only as
a note under ``-v`` (`experiments.hopper.wgmma_serialized`). Each wgmma then waits for the one
before it, and the tensor cores idle while the warps decode the next weights. The K loop's
zero-trip path did this to TABLE's last row: its zeroed accumulators reached the wait after the
loop. Needs the triton package (Triton's compiler and ptxas), part of the test extra.
"""

import dataclasses
import inspect
import re

import jax
import jax.numpy as jnp
import pytest

from configs import gpt_oss_20b
from configs import kernel_fingerprint as fingerprint_config
from mxfp4_jax.kernels import flash_attention, tuning

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
  _assert_async_without_spills(tmp_path, kernels, config.num_warps, config.num_stages, config)


@pytest.mark.parametrize("window", [None, "sliding"])
def test_flash_attention_keeps_wgmma_async(tmp_path, window):
  """The prefill's attention as the model calls it (the kernel's default blocks and launch),
  20b's heads, a 2k prompt; full and sliding layers (the key loop's bounds differ)."""
  model = gpt_oss_20b.model_config()
  window = model.sliding_window if window else None
  tokens, kv_heads, head_dim = 2048, model.num_kv_heads, model.head_dim
  group = model.num_heads // kv_heads
  sds = jax.ShapeDtypeStruct
  kv = sds((1, tokens, kv_heads, head_dim), jnp.bfloat16)
  # The public function's defaults, into the jitted call behind its checks (which refuse to
  # compile for a GPU on a machine without one).
  defaults = {name: p.default for name, p in
              inspect.signature(flash_attention.flash_attention).parameters.items()
              if name in ("block_q", "block_k", "num_warps", "num_stages")}
  kernels, _ = hopper.lower_pallas_for_hopper(
      lambda q, k, v, positions, sinks: flash_attention._flash_attention(
          q, k, v, positions, sinks, window=window, interpret=False, **defaults),
      sds((1, tokens, kv_heads, group, head_dim), jnp.bfloat16), kv, kv,
      sds((1, tokens), jnp.int32), sds((kv_heads, group), jnp.float32))
  what = f"flash_attention, window {window}, {defaults}"
  _assert_async_without_spills(tmp_path, kernels, defaults["num_warps"], defaults["num_stages"],
                               what)


def _assert_async_without_spills(tmp_path, kernels, num_warps: int, num_stages: int, what):
  assert kernels, "no kernel was lowered"
  for i, ttir in enumerate(kernels):  # e.g. the main call, then any remainder tiles' call
    folder = tmp_path / str(i)
    folder.mkdir()
    compiled = hopper.compile_sm90(ttir, num_warps, num_stages, folder)
    assert "wgmma.mma_async" in compiled.asm["ptx"], "the kernel has no wgmma to check"
    assert hopper.wgmma_serialized(compiled.asm["ptx"], folder) is None, what
    # Spilled registers go to local memory (STL/LDL): slow loads in the K loop.
    sass = hopper.cuobjdump("-sass", folder / "kernel.cubin")
    assert not re.search(r"\b(STL|LDL)\b", sass), f"{what} spills registers"
