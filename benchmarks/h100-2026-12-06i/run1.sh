#!/bin/bash
# HEAD: 20b batch 1 with XLA's exhaustive GEMM tiling search and concurrent command-buffer
# regions, alternated with the defaults.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
git log --oneline -1 | tee -a $OUT/summary.log
declare -A FL=([default]="" [exhaustive]="--xla_gpu_exhaustive_tiling_search=true" [concurrent]="--xla_gpu_graph_enable_concurrent_region=true")
for run in default exhaustive concurrent default exhaustive concurrent; do
  s=$SECONDS
  XLA_FLAGS="${FL[$run]}" PYTHONPATH=/tmp/site:. timeout 200 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_$run > /tmp/e2e_$run.log 2>&1
  echo "rc=$? $((SECONDS-s))s" >> /tmp/e2e_$run.log
  cat /tmp/e2e_$run.log >> $OUT/e2e_flags.log
  grep "decode batch\|rc=" /tmp/e2e_$run.log | sed "s/^/$run /" | tee -a $OUT/summary.log
done
