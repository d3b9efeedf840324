#!/bin/bash
# HEAD: the GPU tests of the kernels and the model (the last round's entry-point and model
# checks, the router's NaN ranking), generate once, then the full end-to-end table and 120b at
# batch 1.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_tests 200 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_grouped_matmul.py tests/test_flash_attention.py tests/test_router.py tests/test_model.py tests/test_layout.py
tail -1 $OUT/gpu_tests.log | tee -a $OUT/summary.log
t generate 90 python -m experiments.generate --config=configs/generate.py:gpt_oss_20b --max_new_tokens=40 --prompt="What is MXFP4?"
grep "summary:" $OUT/generate.log | tee -a $OUT/summary.log
t e2e_120b 80 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=$OUT/e2e_120b
t e2e_20b $((590 - SECONDS)) python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.output_dir=$OUT/e2e_20b
grep -h "decode batch\|prefill batch\|peak" $OUT/e2e_*.log | tee -a $OUT/summary.log
