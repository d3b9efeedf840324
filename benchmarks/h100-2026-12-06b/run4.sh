#!/bin/bash
# 15 K splits at P <= 8 in pick_config (ab/new: MAX_K_SPLITS 15, MIN_K_TILES_PER_SPLIT 3) against HEAD, alternated.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
E20="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1,2 --config.bench.prefill_lengths="
E120="python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths="
(cd ab/new && OUT=$OUT t e2e20_new1 60 $E20 --config.bench.output_dir=/tmp/a)
t e2e20_base1 60 $E20 --config.bench.output_dir=/tmp/b
(cd ab/new && OUT=$OUT t e2e120_new1 60 $E120 --config.bench.output_dir=/tmp/c)
t e2e120_base1 60 $E120 --config.bench.output_dir=/tmp/d
t e2e20_base2 60 $E20 --config.bench.output_dir=/tmp/e
(cd ab/new && OUT=$OUT t e2e20_new2 60 $E20 --config.bench.output_dir=/tmp/f)
grep -H "decode batch" $OUT/e2e*.log | tee -a $OUT/summary.log
