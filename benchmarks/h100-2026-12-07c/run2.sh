#!/bin/bash
# Same machine after run1: the GPU tests of the attention checks (signed positions, shared int32
# range check, window bound) and of the decode loop chosen by batch.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
export PYTHONPATH=/tmp/site:.
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/summary.log
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout ${LIMIT:-400} python -m pytest -q -n 6 \
  -p no:cacheprovider tests/test_flash_attention.py tests/test_generate.py > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$?: $(tail -1 $OUT/gpu_tests.log)" | tee -a $OUT/summary.log
