#!/bin/bash
# 120b batch 256 with smaller prefill calls (run1: out of memory with the default 32k tokens a
# call): 4k tokens a call, then 1k if that does not fit either; then the attention tests (the
# launch checks).
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/summary.log
export PYTHONPATH=/tmp/site:.
for tokens in 4096 1024; do
  [ $SECONDS -gt ${A:-180} ] && break
  timeout $((${LIMIT:-440} - SECONDS)) python -m experiments.bench_e2e \
    --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=256 \
    --config.bench.prefill_lengths= --config.bench.prefill_tokens=$tokens 2>&1 \
    | tee -a $OUT/e2e_120b_b256.log | grep -E "decode batch|peak" | sed "s/^/$tokens /" \
    | tee -a $OUT/summary.log
  grep -q "out of device memory" $OUT/summary.log || break
done
left=$((${LIMIT:-440} - SECONDS)); [ $left -lt 90 ] && exit 0
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $left python -m pytest -q -n 6 -p no:cacheprovider \
  tests/test_flash_attention.py > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$?: $(tail -1 $OUT/gpu_tests.log)" | tee -a $OUT/summary.log
