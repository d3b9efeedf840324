#!/bin/bash
# What the first run's time limits cut: bench_kernel at 120b decode sizes (the K-split floor's
# configs against the reference on the GPU) and 20b gate_up against ragged_dot at prefill sizes.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t kernel_120b 150 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=120b_gate_up --config.rows=1,4,16,64 --config.baselines= --config.plot=False --config.output_dir=$OUT/kernel_120b
grep -h "P=" $OUT/kernel_120b.log | tee -a $OUT/summary.log
t kernel_xla_prefill 200 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=20b_gate_up --config.rows=4096,16384 --config.plot=False --config.output_dir=$OUT/kernel_xla_prefill
grep -h "P=" $OUT/kernel_xla_prefill.log | tee -a $OUT/summary.log
