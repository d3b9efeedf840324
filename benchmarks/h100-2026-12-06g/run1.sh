#!/bin/bash
# The tree (4b5f1e6 with the router kernel's picked-id masking, prepared_router_ids.patch of
# h100-2026-12-06f; committed next): GPU tests of the grouped matmul, generation, router and the
# several-token MoE; then 20b batch 1 alternated against ab/cur (8909331, the router kernel before:
# `git archive 8909331 | tar -x -C ab/cur`); then 120b batch 1 on the tree.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
t() { local name=$1 limit=$2; shift 2; local s=$SECONDS; PYTHONPATH=/tmp/site:. timeout $limit "$@" > $OUT/$name.log 2>&1; echo "$name rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log; }
t gpu_tests 250 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_grouped_matmul.py tests/test_generate.py tests/test_router.py tests/test_model.py::test_moe_decode_rows_of_several_tokens
tail -1 $OUT/gpu_tests.log | tee -a $OUT/summary.log
for run in new cur new cur new cur; do
  dir=.; [[ $run == cur ]] && dir=ab/cur
  (cd $dir && PYTHONPATH=/tmp/site:. timeout 55 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_$run 2>&1 | grep "decode batch" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
t e2e_120b 60 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=$OUT/e2e_120b
grep -h "decode batch\|peak" $OUT/e2e_120b.log | tee -a $OUT/summary.log
