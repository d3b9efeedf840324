#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
C="--config.decode=bf16x2 --config.accumulate_in_mma=1 --config.columns_first=1 --config.remainder_block_m=32"
t pf_gu 200 python -m experiments.tune_kernel --config.shapes=20b_gate_up --config.rows=16384 --config.block_m=256 --config.block_n=64,128 --config.num_warps=4,8 --config.num_stages=2,3,4 --config.prefetch_scales=0,1 --config.paired_halves=1 $C
t pf_down 160 python -m experiments.tune_kernel --config.shapes=20b_down --config.rows=16384 --config.block_m=128,256 --config.block_n=64,128 --config.num_warps=4,8 --config.num_stages=3,4 --config.prefetch_scales=1 $C
t dec 150 python -m experiments.tune_kernel --config.shapes=20b_gate_up,20b_down --config.rows=4 --config.row_experts=True --config.block_m=16 --config.block_n=32,64 --config.num_warps=4 --config.num_stages=4 --config.decode=bf16x2 --config.accumulate_in_mma=1 --config.k_splits=5,9,15 --config.prefetch=1,2 --config.unroll_split=1
