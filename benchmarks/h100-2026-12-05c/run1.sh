#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gemv 400 python benchmarks/h100-2026-12-05c/run1_gemv_probe.py
