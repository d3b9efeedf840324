#!/bin/bash
# The tree (50ba174 + the decode loop compiled with concurrent command-buffer regions,
# engine.DECODE_COMPILER_OPTIONS): GPU tests of generation; 20b batch 1 and 8 alternated against
# ab/cur (50ba174: `git archive 50ba174 | tar -x -C ab/cur`); then 20b prefill with XLA_FLAGS
# concurrent regions vs default, alternated. "while": the tree with the decode loop's while
# and conditional in the command buffer too.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_tests 150 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 8 -p no:cacheprovider tests/test_generate.py
tail -1 $OUT/gpu_tests.log | tee -a $OUT/summary.log
for run in new cur while new cur while; do
  [ $SECONDS -gt 500 ] && break
  dir=.; [[ $run == cur ]] && dir=ab/cur; echo "== $run" >> $OUT/e2e_decode.log
  flags=; [[ $run == while ]] && flags=--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL
  (cd $dir && XLA_FLAGS=$flags PYTHONPATH=/tmp/site:. timeout 80 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1,8 --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_$run 2>&1 | tee -a $OUT/e2e_decode.log | grep "decode batch" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
declare -A FL=([default]="" [concurrent]="--xla_gpu_graph_enable_concurrent_region=true")
for run in concurrent default concurrent default; do
  [ $SECONDS -gt 480 ] && break
  s=$SECONDS
  XLA_FLAGS="${FL[$run]}" PYTHONPATH=/tmp/site:. timeout 100 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.output_dir=/tmp/p_$run > /tmp/p.log 2>&1
  echo "rc=$? $((SECONDS-s))s" >> /tmp/p.log
  sed "s/^/$run: /" /tmp/p.log >> $OUT/e2e_prefill.log
  grep "prefill\|rc=" /tmp/p.log | sed "s/^/$run /" | tee -a $OUT/summary.log
done
