#!/bin/bash
# 120b A/B of the prepared K-split floor (ab/new = HEAD + prepared_split_floor.patch), alternated,
# with the kernel benchmark in the model's row layout (down with float32 output) between.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
E120="python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=16,64 --config.bench.prefill_lengths= --config.bench.timed_runs=3"
(cd ab/new && OUT=$OUT t e2e120_new1 85 $E120 --config.bench.output_dir=$OUT/e2e120_new1)
t e2e120_base1 85 $E120 --config.bench.output_dir=$OUT/e2e120_base1
grep -H "tok/s" $OUT/e2e120_*.log | tee -a $OUT/summary.log
t kernel 70 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=20b_gate_up,20b_down --config.rows=4,64 --config.baselines= --config.plot=False --config.output_dir=$OUT/kernel
grep -h "P=" $OUT/kernel.log | tee -a $OUT/summary.log
t e2e120_base2 85 $E120 --config.bench.output_dir=$OUT/e2e120_base2
(cd ab/new && OUT=$OUT t e2e120_new2 85 $E120 --config.bench.output_dir=$OUT/e2e120_new2)
grep -H "tok/s" $OUT/e2e120_*2.log | tee -a $OUT/summary.log
