#!/bin/bash
# At b62e0f9 (the option the default at every batch), a fresh machine: 20b batch 1 and 8 with
# the default ("default") and with no options ("none"); then the generation tests.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
export PYTHONPATH=/tmp/site:.
nvidia-smi --query-gpu=name --format=csv,noheader
for m in default none; do f=""; [ $m = none ] && f=--config.bench.decode_compiler_options=
  timeout 100 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
    --config.bench.batch_sizes=1,8 --config.bench.prefill_lengths= $f 2>&1 \
    | tee -a $OUT/e2e.log | grep "decode batch" | sed "s/^/20b $m /"; done
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 200 python -m pytest -q -n 6 -p no:cacheprovider \
  tests/test_generate.py > $OUT/gpu_tests.log 2>&1
echo "tests rc=$?"; tail -1 $OUT/gpu_tests.log
