#!/bin/bash
# pick_config's paired-halves program count: a copy of HEAD (base) against the working tree
# (new), 20b gate_up at 192 and 256 rows per expert: the kernel alone, then prefill end to end.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
R=$PWD
t() { local name=$1 limit=$2 dir=$3; shift 3; local s=$SECONDS; (cd $dir && PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1); echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
for tree in base new; do
  d=$R; [ $tree = base ] && d=$R/ab/base
  t kernel_$tree 60 $d python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=20b_gate_up --config.rows=6144,8192 --config.baselines= --config.plot=False --config.output_dir=$OUT/kernel_$tree
  grep -h "P=" $OUT/kernel_$tree.log | tee -a $OUT/summary.log
done
for i in 1 2; do for tree in base new; do
  d=$R; [ $tree = base ] && d=$R/ab/base
  t e2e_${tree}$i 130 $d python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=1536,2048 --config.bench.output_dir=$OUT/e2e_${tree}$i
  grep -h "prefill batch" $OUT/e2e_${tree}$i.log | tee -a $OUT/summary.log
done; done
