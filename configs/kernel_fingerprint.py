"""Fingerprints of the grouped matmul's kernels as compiled for the H100, without a GPU.

  pip install -e '.[sass]'     # triton 3.6.0, for --config.sass
  python -m experiments.kernel_fingerprint --config=configs/kernel_fingerprint.py
  python -m experiments.kernel_fingerprint --config.sass=True \
      --config.compare=results/kernel_fingerprint/<time of the run before the change>

The defaults cover every TABLE row as pick_config gives it at bench_kernel's shapes over the P of
``rows`` (one tile a row up to ``max_rows_one_tile_each``), and each row's split, prefetch and
unrolling variants on two small shapes whose columns do not divide into whole blocks and whose
last K tile is half padding. With sass and an empty Triton cache, minutes on 2 cores.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.shapes = "20b_gate_up,20b_down,120b_gate_up"  # SHAPES names or ExKxN[_swiglu]
  c.rows = "1,4,8,32,64,256,1024,4096,8192,16384"  # 8192: 20b's 256 rows per expert
  c.max_rows_one_tile_each = 256  # also fingerprint one tile a row (row_experts) up to this P
  c.variant_shapes = "5x96x80_swiglu,3x224x48"  # each TABLE row's variants on these shapes
  c.variant_rows = 64
  c.variant_k_splits = "1,2,3"
  c.variant_prefetch = "0,1,2"
  c.sass = False  # also compile each kernel to sm_90 and hash its disassembly
  c.workers = 2  # processes compiling with Triton
  c.compare = ""  # an earlier run's folder: print which cases' fingerprints changed
  c.output_dir = ""  # default results/kernel_fingerprint/<timestamp>
  return c
