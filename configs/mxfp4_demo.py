"""Quantize a matrix to MXFP4 and report the error and the bytes saved.

  python -m experiments.mxfp4_demo
  python -m experiments.mxfp4_demo --config=configs/mxfp4_demo.py --config.rows=2880 \
      --config.cols=2880 --config.histogram=results/mxfp4_demo/error.png
  python -m experiments.mxfp4_demo --config.input=weights.npy
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.input = ""  # a .npy matrix [N, K] to quantize along K; empty: random
  c.rows = 256  # N of the random matrix
  c.cols = 1024  # K of the random matrix (a multiple of 32)
  c.distribution = "normal"  # or "student_t": heavy tails, like trained weights
  c.seed = 0
  c.histogram = ""  # where to save a histogram of the error, dequantized - original (PNG)
  return c
