#!/bin/bash
# 9b8cf0e: the grouped-matmul tests with the kernel's outputs poisoned on the GPU, the
# format tests and the chain test; the timing chain's new form (a partial of the jitted chain) in bench_kernel.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t tests 150 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 6 -p no:cacheprovider tests/test_grouped_matmul.py tests/test_format.py "tests/test_experiments.py::test_a_chain_keeps_its_calls_where_the_dependency_feeds_the_work"
tail -1 $OUT/tests.log | tee -a $OUT/summary.log
t bench_kernel 80 python -m experiments.bench_kernel --config.shapes=20b_gate_up --config.rows=4,16384 --config.baselines= --config.output_dir=$OUT/bench_kernel
grep -h "P=" $OUT/bench_kernel.log | tee -a $OUT/summary.log
