#!/bin/bash
# The GPU tests owed by the attention entry points' static-argument checks (kernel bodies
# unchanged) and the generator's last changes; then the full 20b table at HEAD.
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
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 240 python -m pytest -q -n 6 -p no:cacheprovider \
  tests/test_flash_attention.py tests/test_generate.py tests/test_grouped_matmul.py \
  > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$?: $(tail -1 $OUT/gpu_tests.log)" | tee -a $OUT/summary.log
left=$((${LIMIT:-580} - SECONDS - 10))
timeout $left python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
  --config.bench.output_dir=$OUT/e2e_20b 2>&1 | tee $OUT/e2e_20b.log \
  | grep -E "decode batch|prefill batch|peak" | sed "s/^/20b /" | tee -a $OUT/summary.log
echo "e2e rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a $OUT/summary.log
