#!/bin/bash
# Prompt tokens a prefill call (engine.PREFILL_TOKENS, 32k): 120b batch 256 ran out of memory
# with 32k-token calls and fit with 4k (run1). A batch's prefill time (the decode row's first
# token) and peak memory at 32k and 4k-token calls (8k if time is left), 20b batch 256; 120b
# batch 256 at 8k (4k if time is left).
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv \
  | tee $OUT/summary.log
export PYTHONPATH=/tmp/site:.
total=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
if [ "$total" -gt 90000 ]; then  # on a larger GPU, JAX's allocator limited to an H100's bytes
  export XLA_PYTHON_CLIENT_MEM_FRACTION=$(python -c "print(round(0.95 * 81559 / $total, 4))")
  echo "allocator limited to an H100's: fraction $XLA_PYTHON_CLIENT_MEM_FRACTION" \
    | tee -a $OUT/summary.log
fi
bench_case() {  # model, prompt tokens a call, time limit
  timeout $3 python -m experiments.bench_e2e --config=configs/gpt_oss_$1.py \
    --config.bench.batch_sizes=256 --config.bench.prefill_lengths= --config.bench.timed_runs=3 \
    --config.bench.prefill_tokens=$2 2>&1 | tee $OUT/e2e_$1_$2.log \
    | grep -E "decode batch|peak" | sed "s/^/$1 $2-token calls /" | tee -a $OUT/summary.log
  echo "$1 $2 rc=${PIPESTATUS[0]}" | tee -a $OUT/summary.log
}
bench_case 20b 32768 90
bench_case 20b 4096 90
bench_case 120b 8192 150
[ $((${LIMIT:-330} - SECONDS)) -gt 100 ] && bench_case 120b 4096 100
[ $((${LIMIT:-330} - SECONDS)) -gt 60 ] && bench_case 20b 8192 60
