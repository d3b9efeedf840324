"""The decode-size grouped matmul's reads alone, beside the kernel (one token's top-4 rows).

  python -m experiments.load_ceiling --config=configs/load_ceiling.py
  python -m experiments.load_ceiling --config.shapes=120b_gate_up --config.k_splits=9
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.shapes = "20b_gate_up,20b_down"
  c.rows = 4  # one token's top-k rows: each reads its own expert
  c.top_k = 4
  c.k_splits = "5,9,15"  # for the reads alone; the kernel runs its tuned split
  c.weight_copies = 8  # rotated so that no weight sits in L2 (more when P is small)
  c.max_weight_bytes = 6e9
  c.calls = (2, 8)
  c.repeats = 3
  c.seed = 0
  c.output_dir = ""
  return c
