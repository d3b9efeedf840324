"""Sweep of the grouped matmul's block sizes and launch parameters; picks the best per P.

  python -m experiments.tune_kernel --config=configs/tune_kernel.py
  python -m experiments.tune_kernel --config=configs/tune_kernel.py --config.rows=4,64
  python -m experiments.tune_kernel --config.rows=4 --config.row_experts=True \
      --config.decode=bf16x2 --config.k_splits=3,5,9 --config.unroll_split=1 --config.prefetch=0,1,2

Every sweep needs a GPU (it times compiled Triton kernels). The winners go into
`mxfp4_jax/kernels/tuning.py` (TABLE) by hand, with this command recorded in BENCHMARKS.md.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.shapes = "20b_gate_up"
  c.rows = "4,64,1024,16384"
  c.block_m = "16,32,64,128"  # only values <= 2 * rows per active expert are tried (min 16)
  c.block_n = "32,64,128"
  c.num_warps = "4,8"
  c.num_stages = "3,4"
  c.k_splits = "1"
  c.prefetch = "0"  # K tiles loaded ahead of the current dot, e.g. "0,1,2"
  c.remainder_block_m = "0"  # rows past a group's full tiles in smaller tiles, e.g. "0,32"
  c.decode = "integer"  # or "bf16x2", "lut", or a list: "integer,bf16x2"
  c.accumulate_in_mma = "0"  # "0,1" sweeps both
  c.prefetch_scales = "0"  # "0,1" sweeps both
  c.unroll_split = "0"  # "0,1" sweeps both (only matters with k_splits > 1)
  c.columns_first = "0"  # "0,1" sweeps both launch orders (KernelConfig.columns_first)
  c.paired_halves = "0"  # "0,1": gate_up's glu and linear rows in one dot or two
  c.max_rel_err = 1e-2  # candidates further from the float32 reference are reported and dropped
  c.top_k = 4
  c.row_experts = False  # True: each row names its expert, one tile a row (a decode step's path)
  c.weight_copies = 8
  # True: 2 copies only, whose experts at decode sizes mostly stay in the 50 MB L2: how fast the
  # kernel reads its weights from L2 (e.g. 20b down at P=4: 2 x 17.6 MB)
  c.weights_in_l2 = False
  c.max_weight_bytes = 18e9  # cap on all copies of one weight (120b at P = 1: 12 of 1.1 GB)
  c.calls = (2, 8)
  c.repeats = 3
  # Then the sweep's confirm_top fastest and the config pick_config gives today, timed
  # confirm_rounds more times in turn; BEST is the fastest median (0 rounds: the sweep's figure).
  c.confirm_top = 3
  c.confirm_rounds = 3
  c.seed = 0
  c.output_dir = ""
  return c
