"""The kernels of one GPT-OSS decode step on a Hopper GPU, compiled here without a GPU.

  pip install -e '.[cuda13]'     # XLA's CUDA compiler; no GPU is needed to compile
  python -m experiments.step_kernels --config=configs/step_kernels.py
  python -m experiments.step_kernels --config.batch=64 --config.model.num_layers=4
  python -m experiments.step_kernels --config.kernel_options=prefetch=2

Two layers (one sliding, one full attention) show every per-layer kernel; the full model repeats
them. Which kernels XLA fuses is decided at compile time, so the count is what the GPU runs;
their times need the GPU (experiments.trace_summary).
"""

import ml_collections

from configs import gpt_oss_20b


def get_config():
  c = ml_collections.ConfigDict()
  c.model = gpt_oss_20b.model_config(num_layers=2)
  c.batch = 1
  c.context = 1024  # cache slots: context + steps + 1
  c.steps = 16  # decode steps in the compiled loop (the kernels are those of one step)
  # KernelConfig fields replaced in every config the grouped matmuls pick (as bench_e2e's
  # --config.bench.kernel_options), e.g. "prefetch=2"; '' for none
  c.kernel_options = ""
  c.target = "configs/gpu_targets/h200.txtpb"  # XLA GpuTargetConfigProto of the GPU compiled for
  c.output_dir = ""  # default results/step_kernels/<timestamp>: the optimized HLO, the table
  return c
