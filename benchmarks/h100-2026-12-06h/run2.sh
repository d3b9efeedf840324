#!/bin/bash
# KernelConfig.max_registers (8e5fbed with run2_max_registers.patch: the register cap set on the Triton module XLA
# compiles): 20b batch 1 end to end, alternated, then bench_kernel at P = 4.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory --format=csv | tee $OUT/summary.log
for cap in 0 56 0 56; do
  opt=""; [[ $cap != 0 ]] && opt="--config.bench.kernel_options=max_registers=$cap"
  PYTHONPATH=/tmp/site:. timeout 55 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= $opt --config.bench.output_dir=/tmp/e2e_$cap > /tmp/e2e_$cap.log 2>&1
  echo "rc=$?" >> /tmp/e2e_$cap.log
  cat /tmp/e2e_$cap.log >> $OUT/e2e.log
  grep "decode batch\|rc=" /tmp/e2e_$cap.log | sed "s/^/cap $cap /" | tee -a $OUT/summary.log
done
for cap in 0 56 48; do
  opt=""; [[ $cap != 0 ]] && opt="--config.kernel_options=max_registers=$cap"
  PYTHONPATH=/tmp/site:. timeout 50 python -m experiments.bench_kernel --config.shapes=20b_gate_up,20b_down --config.rows=4 --config.baselines= $opt --config.output_dir=/tmp/bk_$cap > /tmp/bk_$cap.log 2>&1
  echo "bench_kernel max_registers=$cap rc=$?" | tee -a $OUT/summary.log
  cat /tmp/bk_$cap.log >> $OUT/bench_kernel.log
  grep -E "^  (20b|120b)" /tmp/bk_$cap.log | sed "s/^/cap $cap /" | tee -a $OUT/summary.log
done
