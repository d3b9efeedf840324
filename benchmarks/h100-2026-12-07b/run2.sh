#!/bin/bash
# At 934ab1f, on the machine of run1 (still warm): 20b batch 1 and 64, then 120b batch 1, with
# the decode loop's concurrent command-buffer scheduling off ("def") and on ("conc").
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
export PYTHONPATH=/tmp/site:.
O=--config.bench.decode_compiler_options=xla_gpu_command_buffer_scheduling_mode=CONCURRENT
for m in def conc; do f=""; [ $m = conc ] && f=$O
  timeout 100 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
    --config.bench.batch_sizes=1,64 --config.bench.prefill_lengths= $f 2>&1 \
    | tee -a $OUT/e2e.log | grep "decode batch" | sed "s/^/20b $m /"; done
for m in conc def; do f=""; [ $m = conc ] && f=$O
  timeout 70 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py \
    --config.bench.batch_sizes=1 --config.bench.prefill_lengths= $f 2>&1 \
    | tee -a $OUT/e2e.log | grep "decode batch" | sed "s/^/120b $m /"; done
