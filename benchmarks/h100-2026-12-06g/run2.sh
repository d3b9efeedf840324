#!/bin/bash
# run1's GPU tests again, verbose, with their durations and a longer limit (run1's 250 s left 3 unfinished).
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv | tee $OUT/summary.log
s=$SECONDS
PYTHONPATH=/tmp/site:. timeout 380 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -v -n 6 -p no:cacheprovider --durations=25 tests/test_grouped_matmul.py tests/test_generate.py tests/test_router.py tests/test_model.py::test_moe_decode_rows_of_several_tokens > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log
grep -E "passed|failed" $OUT/gpu_tests.log | tail -2 | tee -a $OUT/summary.log
