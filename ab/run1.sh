#!/bin/bash
# The checks still owed a GPU (grouped-matmul tests with the 120b K-split floor, bench_kernel and
# tune_kernel's confirm pass after the call-form refactor, the chained matmul ceiling), the XLA
# baselines with the 100 MB rotation, then the end-to-end table at HEAD.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t ceilings 40 python -m experiments.ceilings --config=configs/ceilings.py --config.output_dir=$OUT/ceilings
tail -1 $OUT/ceilings.log | tee -a $OUT/summary.log
t gpu_tests 140 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_grouped_matmul.py
tail -2 $OUT/gpu_tests.log | tee -a $OUT/summary.log
t kernel 80 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.rows=1,4,16,64 --config.baselines= --config.plot=False --config.output_dir=$OUT/kernel
grep -h "P=" $OUT/kernel.log | tee -a $OUT/summary.log
t tune 70 python -m experiments.tune_kernel --config=configs/tune_kernel.py --config.shapes=20b_down --config.rows=4 --config.row_experts=True --config.block_m=16 --config.block_n=64 --config.num_warps=4 --config.num_stages=4 --config.decode=bf16x2 --config.accumulate_in_mma=1 --config.k_splits=5,9,15 --config.prefetch=1 --config.unroll_split=1 --config.confirm_top=2 --config.confirm_rounds=3 --config.output_dir=$OUT/tune
tail -8 $OUT/tune.log | tee -a $OUT/summary.log
t kernel_xla 130 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=20b_gate_up --config.output_dir=$OUT/kernel_xla
grep -h "P=" $OUT/kernel_xla.log | tee -a $OUT/summary.log
t e2e_120b 60 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=$OUT/e2e_120b
t e2e_20b $((585 - SECONDS)) python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.output_dir=$OUT/e2e_20b
grep -h "decode batch\|prefill batch\|peak" $OUT/e2e_*.log | tee -a $OUT/summary.log
