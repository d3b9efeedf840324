#!/bin/bash
# 120b P=16384 kernel row; batch-1 trace and 120b decode with the [D, V] unembedding; model tests on the GPU.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t kernel120_16k 90 python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=120b_gate_up --config.rows=16384 --config.output_dir=$OUT/kernel120_16k
t trace_gen 90 python -m experiments.generate --config=configs/generate.py:gpt_oss_20b --max_new_tokens=48 --profile_dir=/tmp/trace
t trace_summary 60 python -m experiments.trace_summary --trace=/tmp/trace --steps=16 --top=40
t e2e_120b 150 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1,8 --config.bench.prefill_lengths= --config.bench.output_dir=$OUT/e2e_120b
t gpu_model_tests 150 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_model.py
grep "P=" $OUT/kernel120_16k.log | grep -v "^I1"; head -30 $OUT/trace_summary.log; grep -E "decode|built" $OUT/e2e_120b.log | grep -v "^I1"; tail -2 $OUT/gpu_model_tests.log
