#!/bin/bash
# At 188ad32 (the option the default for two rows or more), a fresh machine: 20b batch 1 and 8
# with the default; then the tests of the decode loop's options.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
export PYTHONPATH=/tmp/site:.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 95 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
  --config.bench.batch_sizes=1,8 --config.bench.prefill_lengths= 2>&1 | tee $OUT/e2e.log \
  | grep "decode batch"
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 70 python -m pytest -q -p no:cacheprovider \
  tests/test_generate.py -k "reach_the_decode or compiler_options" > $OUT/gpu_tests.log 2>&1
echo "tests rc=$?"; tail -1 $OUT/gpu_tests.log
