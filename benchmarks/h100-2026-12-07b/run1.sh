#!/bin/bash
# The decode loop's concurrent command-buffer scheduling, the opt-in flag on ("conc") against off
# ("def"), alternated in one tree: 120b batch 1 in pairs, then 20b batch 1 and 8; then
# experiments.generate with and without the option (random 20b, 200 tokens); then the generation
# and attention tests, until LIMIT seconds.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
export PYTHONPATH=/tmp/site:.
OPTION=xla_gpu_command_buffer_scheduling_mode=CONCURRENT
bench() {  # model batches mode
  local flag=""; [ $3 = conc ] && flag=--config.bench.decode_compiler_options=$OPTION
  local s=$SECONDS; echo "== $1 $2 $3" >> $OUT/e2e_decode.log
  timeout 70 python -m experiments.bench_e2e --config=configs/gpt_oss_$1.py \
    --config.bench.batch_sizes=$2 --config.bench.prefill_lengths= $flag 2>&1 \
    | tee -a $OUT/e2e_decode.log | grep "decode batch" | sed "s/^/$1 $3 /" | tee -a $OUT/summary.log
  echo "$1 $3 $((SECONDS-s))s" >> $OUT/summary.log
}
for mode in conc def def conc conc def; do [ $SECONDS -gt ${A:-250} ] && break; bench 120b 1 $mode; done
for mode in conc def; do [ $SECONDS -gt ${B:-360} ] && break; bench 20b 1,8 $mode; done
for opt in $OPTION ""; do
  [ $SECONDS -gt ${C:-430} ] && break
  echo "== generate options '$opt'" >> $OUT/generate.log
  timeout 60 python -m experiments.generate --config=configs/generate.py:gpt_oss_20b \
    --max_new_tokens=200 --config.decode_compiler_options=$opt >> $OUT/generate.log 2>&1
  echo "generate '$opt' rc=$?: $(grep summary: $OUT/generate.log | tail -1)" | tee -a $OUT/summary.log
done
left=$((${LIMIT:-575} - SECONDS)); [ $left -lt 30 ] && exit 0
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $left python -m pytest -v -n 6 -p no:cacheprovider \
  tests/test_flash_attention.py tests/test_generate.py > $OUT/gpu_tests.log 2>&1
echo "gpu_tests rc=$?" | tee -a $OUT/summary.log
grep -E " FAILED| ERROR" $OUT/gpu_tests.log | head -20 | tee -a $OUT/summary.log
tail -1 $OUT/gpu_tests.log | tee -a $OUT/summary.log
