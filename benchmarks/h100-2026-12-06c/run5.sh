#!/bin/bash
# The TABLE boundary at 128 rows per expert: a 1.1k-token prompt (144 rows per expert) takes the
# last row's 256-row tiles; the 128-row row's config forced by kernel options against it.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
E="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.timed_runs=3"
ROW128="block_m=128,block_n=64,num_warps=4,num_stages=4,paired_halves=0"
for L in 1152 1536; do
  t e2e_table_$L 45 $E --config.bench.prefill_lengths=$L --config.bench.output_dir=$OUT/t$L
  grep -h "prefill batch" $OUT/e2e_table_$L.log | tee -a $OUT/summary.log
  t e2e_row128_$L 45 $E --config.bench.prefill_lengths=$L --config.bench.kernel_options=$ROW128 --config.bench.output_dir=$OUT/r$L
  grep -h "prefill batch" $OUT/e2e_row128_$L.log | tee -a $OUT/summary.log
done
