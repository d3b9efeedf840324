"""Static look at the grouped matmul's machine code for the H100, without a GPU.

  pip install -e '.[sass]'     # triton 3.6.0, the GPU image's; brings ptxas and cuobjdump
  python -m experiments.kernel_sass --config=configs/kernel_sass.py
  python -m experiments.kernel_sass --config.rows=16384 --config.block_m=128 --config.num_warps=8

Lowers the Pallas kernel to Triton IR for sm_90, compiles it with Triton to a cubin, disassembles
it and reports the K loop: instructions per iteration and per decoded weight (each thread
decodes block_n * 64 * (2 for gate_up unless paired_halves) / threads weights an iteration), HGMMA count, shared memory. Instruction counts are a proxy, not a timing: confirm on the GPU.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.shape = "20b_gate_up"  # a configs/bench_kernel.py SHAPES entry
  c.rows = 64  # P, for the static shapes
  c.block_m = 16
  c.block_n = 64
  c.num_warps = 4
  c.num_stages = 5
  c.decode = "integer"  # or "bf16x2", "lut"
  c.accumulate_in_mma = False
  c.prefetch_scales = False
  c.k_splits = 1
  c.unroll_split = False  # with k_splits dividing the K tiles: straight-line code, no loop
  c.prefetch = 0  # K tiles loaded ahead of the current tile's dot (KernelConfig.prefetch)
  c.paired_halves = False  # gate_up's glu and linear rows in one dot (KernelConfig.paired_halves)
  c.row_experts = False  # one tile per row (a decode step's rows) instead of group sizes
  c.output_dir = ""  # where the TTIR, PTX, cubin and SASS go; default results/kernel_sass/<time>
  return c
