#!/bin/bash
# The GPU tests of the persistent grid (KernelConfig.grid_programs) and of the attention entry
# points' static-argument checks; then the persistent grid against one program a tile, the
# kernel alone, alternated by tune_kernel's confirm rounds.
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
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 250 python -m pytest -q -n 6 -p no:cacheprovider \
  tests/test_grouped_matmul.py tests/test_flash_attention.py tests/test_generate.py \
  > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$?: $(tail -1 $OUT/gpu_tests.log)" | tee -a $OUT/summary.log
# The TABLE's last row (256-row tiles), then its 128-row row, each with and without the grid.
last="--config.block_m=256 --config.block_n=128 --config.num_warps=8 --config.num_stages=3"
row4="--config.block_m=128 --config.block_n=64 --config.num_warps=4 --config.num_stages=4"
common="--config.decode=bf16x2 --config.accumulate_in_mma=1 --config.prefetch_scales=1
  --config.remainder_block_m=32 --config.columns_first=1 --config.confirm_rounds=5"
timeout 170 python -m experiments.tune_kernel --config=configs/tune_kernel.py \
  --config.shapes=20b_gate_up,20b_down --config.rows=8192,16384 $last $common \
  --config.paired_halves=1 --config.grid_programs=0,132 2>&1 | tee $OUT/tune_last.log \
  | grep -E "BEST|CONFIRM|NONE|failed|wrong" | tee -a $OUT/summary.log
left=$((${LIMIT:-575} - SECONDS - 5))
timeout $left python -m experiments.tune_kernel --config=configs/tune_kernel.py \
  --config.shapes=20b_gate_up,20b_down --config.rows=4096 $row4 $common \
  --config.grid_programs=0,132,264,396 2>&1 | tee $OUT/tune_row4.log \
  | grep -E "BEST|CONFIRM|NONE|failed|wrong" | tee -a $OUT/summary.log
echo "done at ${SECONDS}s" | tee -a $OUT/summary.log
