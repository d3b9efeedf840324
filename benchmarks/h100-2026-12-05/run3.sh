#!/bin/bash
# ab/base: a checkout of the commit before the TABLE change (74c651f)
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory --format=csv | tee $OUT/summary.log
ROOT=$PWD
t() { local name=$1 limit=$2 dir=$3; shift 3; local s=$SECONDS; (cd $dir && PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1); echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
C="--config.decode=bf16x2 --config.accumulate_in_mma=1 --config.columns_first=1 --config.remainder_block_m=32 --config.prefetch_scales=1 --config.block_m=128"
PF="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=1024,8192"
t pf_base1 85 $ROOT/ab/base $PF
t pf_new1 85 $ROOT $PF
t pf_new2 85 $ROOT $PF
t pf_base2 85 $ROOT/ab/base $PF
t tune4k 150 $ROOT python -m experiments.tune_kernel --config.shapes=20b_gate_up,20b_down --config.rows=4096 --config.block_n=64,128 --config.num_warps=4,8 --config.num_stages=3,4 $C
P120="python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=8192"
t pf120_new 75 $ROOT $P120
