#!/bin/bash
# One call: ab/new (the tree with h100-2026-12-06j/decode_scheduling_concurrent.patch: the decode
# loop compiled with xla_gpu_command_buffer_scheduling_mode=CONCURRENT) alternated with ab/cur
# (the tree) at 20b batch 8; then the GPU tests in ab/new (the patch touches only the
# decode loop's compile options) until the call's time (LIMIT seconds, 585 by default) runs out.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
for run in new cur new cur; do
  [ $SECONDS -gt 200 ] && break
  s=$SECONDS; echo "== $run 20b" >> $OUT/e2e_decode.log
  (cd ab/$run && PYTHONPATH=/tmp/site:. timeout 65 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=8 --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_$run 2>&1 | tee -a $OUT/e2e_decode.log | grep "decode batch" | sed "s/^/20b $run /") | tee -a $OUT/summary.log
  echo "20b $run $((SECONDS-s))s" | tee -a $OUT/summary.log
done
cd ab/new
s=$SECONDS
XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=/tmp/site:. timeout $((${LIMIT:-585} - SECONDS)) python -m pytest -v -n 6 -p no:cacheprovider tests/test_grouped_matmul.py tests/test_router.py tests/test_flash_attention.py tests/test_model.py tests/test_generate.py > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log
grep -c " PASSED" $OUT/gpu_tests.log | sed 's/^/PASSED: /' | tee -a $OUT/summary.log
grep -E " FAILED| ERROR" $OUT/gpu_tests.log | head -20 | tee -a $OUT/summary.log
tail -1 $OUT/gpu_tests.log | tee -a $OUT/summary.log
