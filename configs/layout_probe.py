"""A candidate decode-size weight layout against the kernel's current one (GPU).

  python -m experiments.layout_probe --config=configs/layout_probe.py
  python -m experiments.layout_probe --config.rows=1,4 --config.copies=12
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.shape = "20b_gate_up"  # a configs/bench_kernel.py SHAPES entry with SwiGLU
  c.rows = "1,4,16"  # token-expert rows, one tile each (a decode step's rows)
  c.copies = 12  # weight copies rotated so that the experts a chain touches miss the L2
  c.loads_first = False  # every tile's loads of a split issued before its first decode
  c.seed = 0
  return c
