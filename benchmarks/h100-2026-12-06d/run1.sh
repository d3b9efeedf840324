#!/bin/bash
# (1) The TABLE boundary at 128 rows per expert: 20b prompts of 1,152-1,536 tokens (144-192 rows
# per expert) with the TABLE's pick (256-row tiles) against the 128-row row's config forced,
# alternated A B B A. (2) The last row's stages and remainder tiles at 256-512 rows per expert.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
E="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=1152,1280,1408,1536"
ROW128="block_m=128,block_n=64,num_warps=4,num_stages=4,paired_halves=0"
for run in table1 row128_1 row128_2 table2; do
  opts=""; [[ $run == row128* ]] && opts="--config.bench.kernel_options=$ROW128"
  t e2e_$run 130 $E $opts --config.bench.output_dir=$OUT/$run
  grep -h "prefill batch" $OUT/e2e_$run.log | tee -a $OUT/summary.log
done
t tune_last_row 270 python -m experiments.tune_kernel --config=configs/tune_kernel.py \
  --config.shapes=20b_gate_up,20b_down --config.rows=8192,16384 --config.block_m=256 \
  --config.block_n=128 --config.num_warps=8 --config.num_stages=2,3,4 \
  --config.remainder_block_m=0,32,64 --config.decode=bf16x2 --config.accumulate_in_mma=1 \
  --config.prefetch_scales=1 --config.columns_first=1 --config.paired_halves=1 \
  --config.output_dir=$OUT/tune
grep -h "CONFIRM\|BEST" $OUT/tune_last_row.log | tee -a $OUT/summary.log
