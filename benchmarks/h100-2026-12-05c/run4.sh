#!/bin/bash
# XLA flags A/B at batch 1: programmatic dependent launch, unrolled command-buffer loops.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
B="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths="
PDL="--xla_gpu_enable_pdl=true --xla_gpu_enable_pdl_launch=true"
UNROLL="--xla_gpu_command_buffer_unroll_loops=true"
t default1 120 $B
XLA_FLAGS="$PDL" t pdl1 120 $B
XLA_FLAGS="$UNROLL" t unroll1 120 $B
XLA_FLAGS="$PDL $UNROLL" t both1 120 $B
t default2 120 $B
XLA_FLAGS="$PDL" t pdl2 120 $B
for f in default1 pdl1 unroll1 both1 default2 pdl2; do echo "$f: $(grep 'decode batch' $OUT/$f.log)"; done
