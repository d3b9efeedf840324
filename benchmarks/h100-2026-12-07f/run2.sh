#!/bin/bash
# End to end: 20b prefill of 2k and 8k tokens (256-row tiles) with the persistent grid of 132
# programs against one program a tile, alternated; then the 20b decode table at HEAD.
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
prefill() {  # $1: label, then bench_e2e's extra flags
  label=$1; shift
  timeout 100 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
    --config.bench.batch_sizes= --config.bench.prefill_lengths=2048,8192 "$@" 2>&1 \
    | tee -a $OUT/e2e_prefill_ab.log | grep -E "prefill batch" | sed "s/^/$label /" \
    | tee -a $OUT/summary.log
}
for round in 1 2; do
  prefill base
  prefill grid132 --config.bench.kernel_options=grid_programs=132
done
left=$((${LIMIT:-575} - SECONDS - 5))
timeout $left python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
  --config.bench.prefill_lengths= 2>&1 | tee $OUT/e2e_20b_decode.log \
  | grep -E "decode batch|peak" | sed "s/^/20b /" | tee -a $OUT/summary.log
echo "done at ${SECONDS}s" | tee -a $OUT/summary.log
