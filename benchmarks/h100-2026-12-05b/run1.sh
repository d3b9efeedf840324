#!/bin/bash
# Dense projection layouts (XLA); kernel table (20b down, 120b gate_up) with XLA baselines.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t proj 120 python ab/proj_layout.py
t kernel 420 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=20b_down,120b_gate_up --config.output_dir=$OUT/kernel
