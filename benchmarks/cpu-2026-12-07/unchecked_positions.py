"""What flash_attention's positions check prevents: the jitted body without the check, on
positions that break the contract, against the float64 oracle of the tests (interpret mode).

  JAX_PLATFORMS=cpu PYTHONPATH=.:tests python benchmarks/cpu-2026-12-07/unchecked_positions.py
"""

import jax.numpy as jnp
import numpy as np

from mxfp4_jax.kernels import flash_attention as fa
from numerics import rel_err
from test_flash_attention import _random_attention, oracle

rng = np.random.default_rng(0)
cases = [("padding between tokens, window 4", 4, [*range(16), *[-1] * 16, *range(16, 48)]),
         ("two prompts in one row", None, [*range(32), *range(32)]),
         ("padding between tokens, no window (accepted)", None,
          [*range(16), *[-1] * 16, *range(16, 48)])]
for label, window, row in cases:
  q, k, v, sinks = _random_attention(rng, 2, 64)
  positions = np.array([list(range(64)), row], np.int32)
  out = fa._flash_attention(q, k, v, jnp.asarray(positions), sinks, window=window, block_q=16,
                            block_k=16, num_warps=4, num_stages=2, interpret=True)
  err = float(rel_err(out, oracle(q, k, v, positions, sinks, window)))
  try:
    fa.flash_attention(q, k, v, jnp.asarray(positions), sinks, window=window, block_q=16,
                       block_k=16, interpret=True)
    checked = "accepted"
  except ValueError as e:
    checked = f"ValueError: {e}"
  print(f"{label}: unchecked relative error {err:.3f}; checked: {checked}")
