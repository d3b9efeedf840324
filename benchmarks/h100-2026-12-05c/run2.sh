#!/bin/bash
# A/B: the residual behind an optimization barrier (one XLA kernel a layer fewer at decode).
# ab/base: a copy of the base commit 8c608ff (git archive 8c608ff | tar -x -C ab/base); the change is the working tree.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
B="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1,64 --config.bench.prefill_lengths="
P="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=8192"
ROOT=$PWD
(cd ab/base && OUT=$OUT t ab_base1 150 $B)
t ab_new1 150 $B
t ab_new2 150 $B
(cd ab/base && OUT=$OUT t ab_base2 150 $B)
(cd ab/base && OUT=$OUT t pf_base1 120 $P)
t pf_new1 120 $P
grep -h "tok/s\|decode\|prefill" $OUT/*.log | head -40
