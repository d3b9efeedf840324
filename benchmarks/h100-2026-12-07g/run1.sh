#!/bin/bash
# 1. The device running out of memory in experiments.generate on a GPU: one usage-error line.
# 2. 256-column weight blocks over 128-row tiles against the TABLE's last row (256 over 128) at
#    P = 16,384, 3 and 4 stages: half the x bytes a program reads from L2 a K tile, twice the
#    weight decode across the grid. sm_90 compiles without a GPU: 128 x 256 spills nothing (255
#    registers for gate_up, 204 for down); 256 x 256 spills (1.6 KB of stack).
# 3. The same blocks end to end, 20b prefill 2k and 8k (the last row's prompts), alternated.
# 4. The GPU tests of the generator, with the time left.
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
left() { echo $((${LIMIT:-590} - SECONDS - 3)); }

# 64 prompts with 131,072 cache slots each: 24 KiB a token on 20b's 12 full-attention layers,
# about 200 GB of caches.
prompts=$(for i in $(seq 64); do printf -- '--prompt=hi '; done)
timeout 100 python -m experiments.generate --config=configs/generate.py:gpt_oss_20b \
  --config.max_len=131072 --max_new_tokens=4 $prompts > $OUT/oom.log 2>&1
echo "generate out of memory: rc=$? $(grep -c Traceback $OUT/oom.log) tracebacks" \
  | tee -a $OUT/summary.log
grep -E "^(FATAL|E[0-9]{4}|.*UsageError|.*out of device memory)" $OUT/oom.log | cut -c1-600 \
  | tee -a $OUT/summary.log

blocks="--config.num_warps=8 --config.decode=bf16x2 --config.accumulate_in_mma=1
  --config.prefetch_scales=1 --config.remainder_block_m=32 --config.columns_first=1
  --config.paired_halves=1"
for shape in 20b_gate_up 20b_down; do
  [ $(left) -lt 60 ] && break
  timeout $(($(left) < 150 ? $(left) : 150)) python -m experiments.tune_kernel \
    --config=configs/tune_kernel.py --config.shapes=$shape --config.rows=16384 \
    --config.block_m=128,256 --config.block_n=128,256 --config.num_stages=3,4 $blocks \
    --config.confirm_rounds=2 2>&1 | tee $OUT/tune_$shape.log \
    | grep -E "^  20b|BEST|CONFIRM|NONE|failed|wrong" \
    | sed -E 's/KernelConfig\(block_m=([0-9]+), block_n=([0-9]+), num_warps=([0-9]+), num_stages=([0-9]+).*\)/bm=\1 bn=\2 w=\3 s=\4/' \
    | tee -a $OUT/summary.log
done

for round in 1 2; do
  for options in "" "block_m=128,block_n=256"; do
    [ $(left) -lt 90 ] && break 2
    timeout $(($(left) < 100 ? $(left) : 100)) python -m experiments.bench_e2e \
      --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= \
      --config.bench.prefill_lengths=2048,8192 --config.bench.kernel_options=$options 2>&1 \
      | tee $OUT/e2e_prefill_${round}_${options:-table}.log | grep -E "prefill|options|Error" \
      | sed "s/^/[${options:-table}] /" | tee -a $OUT/summary.log
  done
done

if [ $(left) -gt 40 ]; then
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $(left) python -m pytest -q -n 6 \
    -p no:cacheprovider tests/test_generate.py > $OUT/gpu_tests.log 2>&1
  echo "gpu_tests rc=$?: $(tail -1 $OUT/gpu_tests.log)" | tee -a $OUT/summary.log
fi
echo "done at ${SECONDS}s" | tee -a $OUT/summary.log
