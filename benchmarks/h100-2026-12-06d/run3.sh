#!/bin/bash
# Past the new boundary: 120b at 5,120 tokens (160 rows per expert) and 20b at 1,216 tokens (152
# rows per expert), the TABLE's pick (256-row tiles) against the 128-row row's config forced,
# alternated A B B A.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
ROW128="block_m=128,block_n=64,num_warps=4,num_stages=4,paired_halves=0"
for model in 120b:5120 20b:1216; do
  E="python -m experiments.bench_e2e --config=configs/gpt_oss_${model%:*}.py --config.bench.batch_sizes= --config.bench.prefill_lengths=${model#*:}"
  for run in table1 row128_1 row128_2 table2; do
    opts=""; [[ $run == row128* ]] && opts="--config.bench.kernel_options=$ROW128"
    t e2e_${model%:*}_$run 100 $E $opts --config.bench.output_dir=/tmp/${model%:*}_$run
    grep -h "prefill batch\|Error" $OUT/e2e_${model%:*}_$run.log | tee -a $OUT/summary.log
  done
done
