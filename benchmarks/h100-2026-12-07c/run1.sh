#!/bin/bash
# Owed to a GPU after the thirty-ninth round (prepared, not yet run): batch 256 with the decode
# loop's default options (concurrent scheduling for two rows or more) against none, alternated;
# the GPU tests of the int32 reading of ids, group sizes and row experts; the full 20b table.
# Each part stops starting new work past its time guard (A, B, LIMIT seconds).
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv \
  | tee $OUT/summary.log
export PYTHONPATH=/tmp/site:.
for mode in default none default none; do
  [ $SECONDS -gt ${A:-260} ] && break
  flag=""; [ $mode = none ] && flag=--config.bench.decode_compiler_options=
  timeout 90 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
    --config.bench.batch_sizes=256 --config.bench.prefill_lengths= $flag 2>&1 \
    | tee -a $OUT/e2e_b256.log | grep "decode batch" | sed "s/^/20b $mode /" | tee -a $OUT/summary.log
done
[ $SECONDS -lt ${B:-320} ] && XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 200 python -m pytest -q \
  -n 6 -p no:cacheprovider tests/test_model.py tests/test_grouped_matmul.py tests/test_router.py \
  > $OUT/gpu_tests.log 2>&1; echo "gpu_tests rc=$?: $(tail -1 $OUT/gpu_tests.log)" | tee -a $OUT/summary.log
left=$((${LIMIT:-575} - SECONDS)); [ $left -lt 60 ] && exit 0
timeout $left python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py 2>&1 \
  | tee $OUT/e2e_full.log | grep -E "decode batch|prefill" | tee -a $OUT/summary.log
