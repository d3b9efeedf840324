#!/bin/bash
# The full 20b table and 120b batch 1 with the residual barrier; the model tests on the GPU.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t e2e_20b 240 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.output_dir=$OUT/e2e_20b
t gpu_model_tests 120 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 tests/test_model.py
t e2e_120b 120 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=$OUT/e2e_120b
grep -h "decode batch\|prefill batch\|peak\|passed\|failed" $OUT/*.log
