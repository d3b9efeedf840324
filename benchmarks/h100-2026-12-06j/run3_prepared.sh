#!/bin/bash
# Prepared, not run (no machine): the tree with decode_scheduling_concurrent.patch applied (the
# decode loop compiled with xla_gpu_command_buffer_scheduling_mode=CONCURRENT), 20b batch 8
# alternated against ab/cur (the tree without it: `git archive HEAD | tar -x -C ab/cur`); then the
# GPU tests of generation with it.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
for run in new cur new cur; do
  dir=.; [[ $run == cur ]] && dir=ab/cur; echo "== $run" >> $OUT/e2e_decode.log
  (cd $dir && PYTHONPATH=/tmp/site:. timeout 60 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=8 --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_$run 2>&1 | tee -a $OUT/e2e_decode.log | grep "decode batch" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
s=$SECONDS
XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=/tmp/site:. timeout $((300 - SECONDS)) python -m pytest -q -n 4 -p no:cacheprovider tests/test_generate.py > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log
tail -1 $OUT/gpu_tests.log | tee -a $OUT/summary.log
