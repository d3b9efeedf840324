#!/bin/bash
# HEAD (50ba174): GPU tests of attention (ring-slot fix d530c62), generation, model and router;
# then XLA concurrent command-buffer regions vs default at 20b batch 1 and 8 and 120b batch 1, alternated.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
git log --oneline -1 | tee -a $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_tests 200 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 6 -p no:cacheprovider --durations=10 tests/test_flash_attention.py tests/test_generate.py tests/test_model.py tests/test_router.py
tail -3 $OUT/gpu_tests.log | tee -a $OUT/summary.log
declare -A FL=([default]="" [concurrent]="--xla_gpu_graph_enable_concurrent_region=true")
for run in default concurrent default concurrent; do
  for m in 20b 120b; do
    [ $SECONDS -gt 520 ] && break
    bs=1; [ $m = 20b ] && bs=1,8
    s=$SECONDS
    XLA_FLAGS="${FL[$run]}" PYTHONPATH=/tmp/site:. timeout 100 python -m experiments.bench_e2e --config=configs/gpt_oss_$m.py --config.bench.batch_sizes=$bs --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_${m}_$run > /tmp/e2e.log 2>&1
    echo "rc=$? $((SECONDS-s))s" >> /tmp/e2e.log
    sed "s/^/$m $run: /" /tmp/e2e.log >> $OUT/e2e_flags.log
    grep "decode batch\|rc=" /tmp/e2e.log | sed "s/^/$m $run /" | tee -a $OUT/summary.log
  done
done
