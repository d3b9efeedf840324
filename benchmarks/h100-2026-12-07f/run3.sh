#!/bin/bash
# 256-column weight blocks over 128-row tiles against the TABLE's last row (128 over 256) at
# P = 16,384: half the x bytes a program reads from L2 a K tile, twice the weight decode across
# the grid. sm_90 compiles without a GPU: 128 x 256 spills nothing (255 registers for gate_up,
# 204 for down); 256 x 256 spills (1.6 KB of stack).
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv \
  | tee $OUT/summary.log
export PYTHONPATH=/tmp/site:.
for shape in 20b_gate_up 20b_down; do
  left=$((${LIMIT:-300} - SECONDS - 3)); [ $left -lt 30 ] && break
  timeout $((left < 150 ? left : 150)) python -m experiments.tune_kernel --config=configs/tune_kernel.py \
    --config.shapes=$shape --config.rows=16384 --config.block_m=128,256 --config.block_n=128,256 \
    --config.num_warps=8 --config.num_stages=3 --config.decode=bf16x2 \
    --config.accumulate_in_mma=1 --config.prefetch_scales=1 --config.remainder_block_m=32 \
    --config.columns_first=1 --config.paired_halves=1 --config.confirm_rounds=2 2>&1 \
    | tee $OUT/tune_$shape.log | grep -E "^  20b|BEST|CONFIRM|NONE|failed|wrong" \
    | sed -E 's/KernelConfig\(block_m=([0-9]+), block_n=([0-9]+).*\)/bm=\1 bn=\2/' \
    | tee -a $OUT/summary.log
done
echo "done at ${SECONDS}s" | tee -a $OUT/summary.log
