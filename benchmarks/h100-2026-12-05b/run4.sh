#!/bin/bash
# The decode attention's shares merged by one Pallas kernel: GPU tests, then A/B against HEAD (f17f683), 20b batch 1.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2 dir=$3; shift 3; local s=$SECONDS; (cd $dir && PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1); echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_attention_tests 70 . env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_flash_attention.py
tail -3 $OUT/gpu_attention_tests.log
E="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths="
t ab_base1 60 ab/base $E
t ab_new1 60 . $E
t ab_new2 60 . $E
t ab_base2 60 ab/base $E
for f in ab_base1 ab_new1 ab_new2 ab_base2; do echo "== $f"; grep -E "decode" $OUT/$f.log | grep -v "^I1"; done
