#!/bin/bash
# Batch 1 with 15 K splits (3 tiles each) for both MoE kernels instead of the table's 9, alternated.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
E="python -m experiments.bench_e2e"
B="--config.bench.batch_sizes=1 --config.bench.prefill_lengths="
S15="--config.bench.kernel_options=k_splits=15"
t e2e20_base1 75 $E --config=configs/gpt_oss_20b.py $B --config.bench.output_dir=$OUT/a
t e2e20_s15_1 75 $E --config=configs/gpt_oss_20b.py $B $S15 --config.bench.output_dir=$OUT/b
t e2e20_s15_2 75 $E --config=configs/gpt_oss_20b.py $B $S15 --config.bench.output_dir=$OUT/c
t e2e20_base2 75 $E --config=configs/gpt_oss_20b.py $B --config.bench.output_dir=$OUT/d
t e2e120_base1 75 $E --config=configs/gpt_oss_120b.py $B --config.bench.output_dir=$OUT/e
t e2e120_s15_1 75 $E --config=configs/gpt_oss_120b.py $B $S15 --config.bench.output_dir=$OUT/f
t e2e120_s15_2 75 $E --config=configs/gpt_oss_120b.py $B $S15 --config.bench.output_dir=$OUT/g
t e2e120_base2 75 $E --config=configs/gpt_oss_120b.py $B --config.bench.output_dir=$OUT/h
grep -H "decode batch\|differ\|Error" $OUT/e2e*.log | tee -a $OUT/summary.log
rm -rf $OUT/[a-h]
