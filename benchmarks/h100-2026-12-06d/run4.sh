#!/bin/bash
# The TABLE's 64-row row (33-64 rows per expert: 20b prompts of 257-512 tokens, 120b of
# 1,025-2,048), unchanged since the first H100 sweep: the options the 128-row row gained since,
# swept at 64 rows per expert, then end to end against the TABLE, alternated A B B A.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t tune_row64 230 python -m experiments.tune_kernel --config=configs/tune_kernel.py \
  --config.shapes=20b_gate_up,20b_down --config.rows=2048 --config.block_m=64 \
  --config.block_n=64 --config.num_warps=4 --config.num_stages=4 --config.decode=bf16x2 \
  --config.accumulate_in_mma=0,1 --config.prefetch_scales=0,1 --config.columns_first=0,1 \
  --config.remainder_block_m=0,16 --config.confirm_top=2 --config.output_dir=/tmp/tune
grep -h "CONFIRM\|BEST" $OUT/tune_row64.log | sed -E 's/KernelConfig\(.*accumulate_in_mma=(\w+), prefetch_scales=(\w+).*columns_first=(\w+).*remainder_block_m=([0-9]+)\)/mma=\1 pscales=\2 cols=\3 rem=\4/' | tee -a $OUT/summary.log
E="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=384,512"
NEW="accumulate_in_mma=1,prefetch_scales=1,columns_first=1,remainder_block_m=16"
for run in table1 new1 new2 table2; do
  opts=""; [[ $run == new* ]] && opts="--config.bench.kernel_options=$NEW"
  t e2e_$run 60 $E $opts --config.bench.output_dir=/tmp/$run
  grep -h "prefill batch\|Error" $OUT/e2e_$run.log | tee -a $OUT/summary.log
done
