#!/bin/bash
# HEAD (8e5fbed): 20b batch 1 with XLA's GEMM choices (default; cuBLASLt; no Triton GEMMs),
# alternated; then the GPU tests of the model, router, attention and generation.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
declare -A FL=([default]="" [lt]="--xla_gpu_enable_cublaslt=true" [notriton]="--xla_gpu_enable_triton_gemm=false")
for run in default lt notriton default lt notriton; do
  s=$SECONDS
  XLA_FLAGS="${FL[$run]}" PYTHONPATH=/tmp/site:. timeout 60 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_$run > /tmp/e2e_$run.log 2>&1
  echo "rc=$? $((SECONDS-s))s" >> /tmp/e2e_$run.log
  cat /tmp/e2e_$run.log >> $OUT/e2e_flags.log
  grep "decode batch" /tmp/e2e_$run.log | sed "s/^/$run /" | tee -a $OUT/summary.log
done
t gpu_tests 280 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 6 -p no:cacheprovider --durations=10 tests/test_model.py tests/test_router.py tests/test_flash_attention.py tests/test_generate.py
tail -3 $OUT/gpu_tests.log | tee -a $OUT/summary.log
