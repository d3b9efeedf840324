#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_tests 130 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_grouped_matmul.py
t trace_gen 60 python -m experiments.generate --config=configs/generate.py --config.random_model=gpt_oss_20b --max_new_tokens=48 --profile_dir=/tmp/trace
t trace_summary 30 python -m experiments.trace_summary --trace=/tmp/trace --steps=16 --top=40
C="--config.rows=16384 --config.block_m=256 --config.block_n=128 --config.num_warps=8 --config.num_stages=3 --config.decode=bf16x2 --config.accumulate_in_mma=1 --config.columns_first=1 --config.prefetch_scales=1"
t pf_gu 110 python -m experiments.tune_kernel --config.shapes=20b_gate_up --config.paired_halves=1 --config.k_unroll=1,3 --config.remainder_block_m=0,32,64 $C
t pf_down 60 python -m experiments.tune_kernel --config.shapes=20b_down --config.k_unroll=1,3 --config.remainder_block_m=32 $C
