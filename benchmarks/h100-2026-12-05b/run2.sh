#!/bin/bash
# A/B: the unembedding as [D, V] (new) against [V, D] (base, HEAD), 20b decode; warm start; 120b P=16384 kernel row.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2 dir=$3; shift 3; local s=$SECONDS; (cd $dir && PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1); echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
E="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1,64 --config.bench.prefill_lengths="
t ab_base1 110 ab/base $E
t ab_new1 110 . $E
t ab_new2 110 . $E
t ab_base2 110 ab/base $E
W="python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.compilation_cache_dir=/tmp/jaxcache"
t warm_first 90 . $W
t warm_second 90 . $W
t kernel120_16k 60 . python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.shapes=120b_gate_up --config.rows=16384 --config.output_dir=$OUT/kernel120_16k
for f in ab_base1 ab_new1 ab_new2 ab_base2 warm_first warm_second; do echo "== $f"; grep -E "decode|compile|build|tok/s" $OUT/$f.log | grep -v "^I1" | tail -6; done
grep "P=" $OUT/kernel120_16k.log | grep -v "^I1"
