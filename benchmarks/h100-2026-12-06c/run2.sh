#!/bin/bash
# The working tree on the GPU: grouped-matmul tests, bench_kernel's options path, Nsight Compute
# on the decode and prefill kernels, and a batch-1 decode trace.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_tests 140 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_grouped_matmul.py
tail -2 $OUT/gpu_tests.log | tee -a $OUT/summary.log
t kernel_options 60 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=20b_gate_up --config.rows=4 --config.kernel_options=k_splits=15 --config.baselines= --config.plot=False --config.output_dir=$OUT/kernel_options
grep -h "P=" $OUT/kernel_options.log | tee -a $OUT/summary.log
ONCE="python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.mode=once"
t ncu_decode 120 ncu --clock-control none -k regex:mxfp4 --set full $ONCE --config.shapes=20b_gate_up,20b_down --config.rows=4
t ncu_prefill 120 ncu --clock-control none -k regex:mxfp4 --set full -c 2 $ONCE --config.shapes=20b_gate_up --config.rows=16384
grep -h "Duration\|DRAM Throughput\|Compute (SM) Throughput\|Profiling" $OUT/ncu_*.log | tee -a $OUT/summary.log
t e2e_trace 150 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.profile_dir=/tmp/trace --config.bench.output_dir=$OUT/e2e_trace
grep -h "decode batch" $OUT/e2e_trace.log | tee -a $OUT/summary.log
t trace_summary 60 python -m experiments.trace_summary --trace=/tmp/trace/decode_batch1 --steps=64 --top=40
head -30 $OUT/trace_summary.log | tee -a $OUT/summary.log
