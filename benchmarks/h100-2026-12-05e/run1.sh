#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_tests 290 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_grouped_matmul.py tests/test_router.py tests/test_flash_attention.py tests/test_layout.py tests/test_model.py
tail -3 $OUT/gpu_tests.log | tee -a $OUT/summary.log
t ceilings 50 python -m experiments.ceilings --config=configs/ceilings.py --config.output_dir=$OUT/ceilings
tail -1 $OUT/ceilings.log | tee -a $OUT/summary.log
