#!/bin/bash
# Run on the machine run1 left warm: the 128 x 256 blocks end to end on 20b 4k and 120b 8k
# prefills (512 and 256 rows per expert), one run each way. (Its logs were renamed run2_* here.)
export PYTHONPATH=/tmp/site:.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
for o in "" "block_m=128,block_n=256"; do timeout 80 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=4096 --config.bench.kernel_options=$o 2>&1 | tee $OUT/e2e20_4k_${o:+blocks}.log | grep -E "prefill batch|Error" | sed "s/^/20b [${o:-table}] /"; done
for o in "" "block_m=128,block_n=256"; do timeout 130 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes= --config.bench.prefill_lengths=8192 --config.bench.kernel_options=$o 2>&1 | tee $OUT/e2e120_8k_${o:+blocks}.log | grep -E "prefill batch|Error" | sed "s/^/120b [${o:-table}] /"; done
echo done at $SECONDS
