#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
COMMON="--config.decode=bf16x2 --config.accumulate_in_mma=1 --config.block_n=64 --config.num_warps=4 --config.num_stages=4 --config.output_dir=$OUT/results"
t split_16rows 230 python -m experiments.tune_kernel --config=configs/tune_kernel.py $COMMON --config.shapes=20b_gate_up,20b_down --config.rows=32,64,256 --config.block_m=16 --config.k_splits=2,3,5,9 --config.unroll_split=1 --config.prefetch=0,1
t split_32rows 110 python -m experiments.tune_kernel --config=configs/tune_kernel.py $COMMON --config.shapes=20b_gate_up,20b_down --config.rows=1024 --config.block_m=32 --config.k_splits=2,3,5 --config.unroll_split=1 --config.prefetch=0,1
t unsplit 100 python -m experiments.tune_kernel --config=configs/tune_kernel.py $COMMON --config.shapes=20b_gate_up,20b_down --config.rows=32,64,256,1024 --config.block_m=16,32 --config.k_splits=1 --config.unroll_split=0 --config.prefetch=0,1
t split_120b 90 python -m experiments.tune_kernel --config=configs/tune_kernel.py $COMMON --config.shapes=120b_gate_up --config.rows=32 --config.row_experts=True --config.block_m=16 --config.k_splits=1,2,3,5,9 --config.unroll_split=0,1 --config.prefetch=1
