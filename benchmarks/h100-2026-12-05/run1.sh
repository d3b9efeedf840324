#!/bin/bash
# Standing of main on this GPU: e2e 20b (full), 120b, kernel table with XLA baselines.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
git log --oneline -1 >> $OUT/summary.log 2>/dev/null
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t e2e_20b 210 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.output_dir=$OUT/e2e_20b
t e2e_120b 130 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1,8 --config.bench.prefill_lengths=8192 --config.bench.output_dir=$OUT/e2e_120b
t kernel 220 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.output_dir=$OUT/kernel
