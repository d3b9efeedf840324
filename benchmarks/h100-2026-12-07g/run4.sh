#!/bin/bash
# Prepared, not run: the 128-row row (at most 144 rows an expert: 4 warps over 64-column blocks,
# 4 stages, unpaired) against the last row's blocks (8 warps over 256 columns, 3 stages, paired
# halves) at 128-160 rows an expert, now that both take 128-row tiles. The options replace the
# fields of every config a call picks; these prompts' calls take one of the two rows.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv \
  | tee $OUT/summary.log
export PYTHONPATH=/tmp/site:.
left() { echo $((${LIMIT:-570} - SECONDS - 3)); }
as_row4="block_n=64,num_warps=4,num_stages=4,paired_halves=0"
as_last="block_n=256,num_warps=8,num_stages=3,paired_halves=1"
for round in 1 2; do
  for name in row4 last; do
    [ $name = row4 ] && options=$as_row4 || options=$as_last
    [ $(left) -lt 100 ] && break 2
    # 20b: 128, 144 and 160 rows an expert
    timeout 100 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py \
      --config.bench.batch_sizes= --config.bench.prefill_lengths=1024,1152,1280 \
      --config.bench.kernel_options=$options 2>&1 | tee $OUT/e2e20_${name}_$round.log \
      | grep -E "prefill batch|Error" | sed "s/^/20b [$name] /" | tee -a $OUT/summary.log
  done
done
for name in row4 last; do  # 120b: 144 rows an expert
  [ $name = row4 ] && options=$as_row4 || options=$as_last
  [ $(left) -lt 120 ] && break
  timeout 120 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py \
    --config.bench.batch_sizes= --config.bench.prefill_lengths=4608 \
    --config.bench.kernel_options=$options 2>&1 | tee $OUT/e2e120_$name.log \
    | grep -E "prefill batch|Error" | sed "s/^/120b [$name] /" | tee -a $OUT/summary.log
done
echo "done at ${SECONDS}s" | tee -a $OUT/summary.log
