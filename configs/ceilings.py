"""HBM read bandwidth and bf16 matmul rate of the device (the rooflines' ceilings), and its copy
bandwidth.

  python -m experiments.ceilings --config=configs/ceilings.py
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.array_bytes = 4e9  # bytes of the array read (and, by the copy, written): far past any L2
  c.matmul_size = 8192  # a d x d x d bf16 matmul, float32 accumulation
  c.output_dir = ""
  return c
