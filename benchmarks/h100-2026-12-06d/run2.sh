#!/bin/bash
# 120b prompts of 4,352 and 4,608 tokens (136 and 144 rows per expert): the tree's TABLE (the
# 128-row row now up to 144 rows) against the last row's config forced, alternated A B B A;
# then the grouped-matmul tests compiled on the GPU.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
E="python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=4352,4608"
LAST="block_m=256,block_n=128,num_warps=8,num_stages=3,paired_halves=1"
for run in table1 last1 last2 table2; do
  opts=""; [[ $run == last* ]] && opts="--config.bench.kernel_options=$LAST"
  t e2e_120b_$run 110 $E $opts --config.bench.output_dir=/tmp/$run
  grep -h "prefill batch\|Error" $OUT/e2e_120b_$run.log | tee -a $OUT/summary.log
done
XLA_PYTHON_CLIENT_PREALLOCATE=false t gpu_tests 150 python -m pytest -q -n 4 tests/test_grouped_matmul.py
tail -2 $OUT/gpu_tests.log | tee -a $OUT/summary.log
