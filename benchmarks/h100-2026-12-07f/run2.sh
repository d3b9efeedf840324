#!/bin/bash
# The 20b decode table and 120b batch 1 at HEAD; then the persistent grid of 132 programs
# against one program a tile for 20b down at P = 16384 (run1's sweep timed out before it).
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
timeout 240 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
  --config.bench.prefill_lengths= 2>&1 | tee $OUT/e2e_20b_decode.log \
  | grep -E "decode batch|peak" | sed "s/^/20b /" | tee -a $OUT/summary.log
timeout 120 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py \
  --config.bench.batch_sizes=1 --config.bench.prefill_lengths= 2>&1 | tee $OUT/e2e_120b_b1.log \
  | grep -E "decode batch|peak" | sed "s/^/120b /" | tee -a $OUT/summary.log
left=$((${LIMIT:-575} - SECONDS - 5))
timeout $left python -m experiments.tune_kernel --config=configs/tune_kernel.py \
  --config.shapes=20b_down --config.rows=16384 --config.block_m=256 --config.block_n=128 \
  --config.num_warps=8 --config.num_stages=3 --config.decode=bf16x2 --config.accumulate_in_mma=1 \
  --config.prefetch_scales=1 --config.remainder_block_m=32 --config.columns_first=1 \
  --config.paired_halves=1 --config.grid_programs=0,132 --config.confirm_rounds=5 2>&1 \
  | tee $OUT/tune_down.log | grep -E "BEST|CONFIRM|NONE|failed|wrong" | tee -a $OUT/summary.log
echo "done at ${SECONDS}s" | tee -a $OUT/summary.log
