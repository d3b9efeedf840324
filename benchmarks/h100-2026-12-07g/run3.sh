#!/bin/bash
# The TABLE's new last row (128-row tiles by 256-column blocks) on the GPU: the kernel tests,
# then the 20b prefill table at HEAD.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv \
  | tee $OUT/summary.log
export PYTHONPATH=/tmp/site:.
total=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
if [ "$total" -gt 90000 ]; then  # a larger GPU gets an 80 GB H100's allocator bytes
  export XLA_PYTHON_CLIENT_MEM_FRACTION=$(python -c "print(round(0.95 * 81559 / $total, 4))")
  echo "allocator limited to an H100's: fraction $XLA_PYTHON_CLIENT_MEM_FRACTION" \
    | tee -a $OUT/summary.log
fi
left() { echo $((${LIMIT:-480} - SECONDS - 3)); }
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 python -m pytest -q -n 6 -p no:cacheprovider \
  tests/test_grouped_matmul.py > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$?: $(tail -1 $OUT/gpu_tests.log)" | tee -a $OUT/summary.log
timeout $(left) python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
  --config.bench.batch_sizes= --config.bench.output_dir=$OUT/e2e_20b 2>&1 \
  | tee $OUT/e2e_20b.log | grep -E "prefill batch|peak|Error" \
  | tee -a $OUT/summary.log
echo "done at ${SECONDS}s" | tee -a $OUT/summary.log
