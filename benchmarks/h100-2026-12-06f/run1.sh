#!/bin/bash
# HEAD: the GPU tests of the router, model, generation and grouped matmul; generate with a trace; the router
# kernel's masking (7e13dbe) against its version before, 20b batch 1, alternated; 120b batch 1.
# ab/base is HEAD with mxfp4_jax/kernels/router.py from 6af2439.
REPO=$(pwd)
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_tests 270 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_router.py tests/test_model.py tests/test_generate.py tests/test_grouped_matmul.py
tail -1 $OUT/gpu_tests.log | tee -a $OUT/summary.log
t generate 90 python -m experiments.generate --config=configs/generate.py:gpt_oss_20b --max_new_tokens=200 --prompt="What is MXFP4?" --profile_dir=/tmp/trace
grep "summary:\|trace" $OUT/generate.log | tee -a $OUT/summary.log
ls -R /tmp/trace | head -20 > $OUT/trace_files.log
for run in base new base new; do
  dir=.; [[ $run == base ]] && dir=ab/base
  (cd $dir && PYTHONPATH=/tmp/site:. timeout 70 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_$run 2>&1 | grep "decode batch" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
t e2e_120b 80 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=$OUT/e2e_120b
grep -h "decode batch\|peak" $OUT/e2e_120b.log | tee -a $OUT/summary.log
