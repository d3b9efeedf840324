#!/bin/bash
# The full 120b table, the default command (decode batch 1, 8, 64, 256 at a 1k context; prefill
# 1k, 2k, 8k): batch 256 beside 61 GiB of weights may not fit, and is then a row that says so.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv \
  | tee $OUT/summary.log
export PYTHONPATH=/tmp/site:.
timeout ${LIMIT:-570} python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py \
  --config.bench.output_dir=$OUT/120b 2>&1 | tee $OUT/e2e_120b.log \
  | grep -E "weights|decode batch|prefill|peak" | tee -a $OUT/summary.log
echo "rc=${PIPESTATUS[0]}" | tee -a $OUT/summary.log
