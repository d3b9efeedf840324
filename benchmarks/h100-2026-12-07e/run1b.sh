#!/bin/bash
# Right after run1, on the same machine: 120b batch 256 with the default 32k-token prefill calls
# now that a batch's caches are held once; 20b batch 256's peak with 8k-token calls.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
export PYTHONPATH=/tmp/site:.
nvidia-smi --query-gpu=name,memory.total --format=csv | tee $OUT/summary.log
timeout 200 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py \
  --config.bench.batch_sizes=256 --config.bench.prefill_lengths= 2>&1 | tee $OUT/e2e_120b_32k.log \
  | grep -E "decode batch|peak|memory" | sed "s/^/120b 32k /" | tee -a $OUT/summary.log
echo "rc=${PIPESTATUS[0]}" | tee -a $OUT/summary.log
timeout 120 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
  --config.bench.batch_sizes=256 --config.bench.prefill_lengths= \
  --config.bench.prefill_tokens=8192 2>&1 | tee $OUT/e2e_20b_8k.log \
  | grep -E "decode batch|peak" | sed "s/^/20b 8k-calls /" | tee -a $OUT/summary.log
