"""Benchmark of the MXFP4 grouped matmul at GPT-OSS shapes, with XLA baselines.

  python -m experiments.bench_kernel --config=configs/bench_kernel.py
  python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.mode=eager_smoke
  ncu --clock-control none -k regex:mxfp4 python -m experiments.bench_kernel --config.mode=once \
      --config.shapes=20b_gate_up --config.rows=4
  python -m experiments.bench_kernel --config=configs/bench_kernel.py \
      --config.shapes=20b_down --config.rows=4,4096 --config.baselines=

The "bench" (default) and "once" modes need a GPU; "eager_smoke" also runs on a CPU, in
interpret mode.
"""

import ml_collections

# name: (experts, in_features K, out_features N, activation)
SHAPES = {
    "20b_gate_up": (32, 2880, 5760, "swiglu"),
    "20b_down": (32, 2880, 2880, None),
    "120b_gate_up": (128, 2880, 5760, "swiglu"),
}


def get_config():
  c = ml_collections.ConfigDict()
  c.mode = "bench"  # "eager_smoke": one small call checked against the reference; "once": for ncu
  c.shapes = "20b_gate_up,20b_down,120b_gate_up"
  c.rows = "1,4,16,64,256,1024,4096,16384"  # token-expert rows P
  c.top_k = 4
  # "model": one kernel tile a row up to P = E / 2, as the model's decode steps run them (no
  # sort); "always" or "never" for either layout at every P
  c.row_experts = "model"
  # KernelConfig fields replaced in the tuned config of each P, e.g. "decode=lut" ('' none)
  c.kernel_options = ""
  c.baselines = "ragged_dot,dense"  # XLA bf16 baselines timed in the same run ('' for none)
  c.max_rel_err = 1e-2  # a kernel further from the float32 reference stops the run untimed
  c.weight_copies = 8  # MXFP4 copies rotated per timed chain (more where P is small)
  # Cap on all copies of one weight: 120b at P = 1 takes 12 MXFP4 copies (13.5 GB) and 4 bf16
  # ones (17 GB) to read `benchmarking.PAST_L2_BYTES` (100 MB) a rotation.
  c.max_weight_bytes = 18e9
  c.calls = (4, 20)  # calls per timed chain (two lengths; the slope is the time per call)
  c.repeats = 5
  c.seed = 0
  # Roofline ceilings: HBM read bandwidth and bf16 matmul rate (experiments.ceilings).
  c.hbm_bytes_per_s = 0.0  # 0: this GPU's (experiments.common.ceilings)
  c.bf16_flops_per_s = 0.0
  c.output_dir = ""  # default: results/bench_kernel/<timestamp>
  c.profile_dir = ""  # if set: a jax.profiler trace of 3 kernel calls per (shape, P) under it
  c.plot = True
  return c
