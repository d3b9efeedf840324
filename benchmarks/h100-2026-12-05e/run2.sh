#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
E20="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=8,64,128 --config.bench.prefill_lengths="
(cd ab/new && OUT=$OUT t e2e20_new1 100 $E20 --config.bench.output_dir=$OUT/e2e20_new1)
t e2e20_base1 100 $E20 --config.bench.output_dir=$OUT/e2e20_base1
t e2e20_base2 100 $E20 --config.bench.output_dir=$OUT/e2e20_base2
(cd ab/new && OUT=$OUT t e2e20_new2 100 $E20 --config.bench.output_dir=$OUT/e2e20_new2)
grep -h "tok/s" $OUT/e2e20_*.log | tee -a $OUT/summary.log
