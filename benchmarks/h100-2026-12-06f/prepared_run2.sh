#!/bin/bash
# The router kernel's top-k rounds, 20b batch 1, alternated: base (6af2439's rounds: picked
# logits set to -inf), cur (HEAD: an `unpicked` mask), new (the tree: picked logits -inf and
# their ids moved past the last). The router tests, the PTX-decode kernel test and the
# several-token one-row-tile MoE test on the tree first.
REPO=$(pwd)
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name,clocks.current.sm,clocks.current.memory,memory.total --format=csv | tee $OUT/summary.log
PYTHONPATH=/tmp/site:. timeout 90 env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -n 4 -p no:cacheprovider tests/test_router.py tests/test_grouped_matmul.py::test_ptx_decode_computes_the_same_sums tests/test_model.py::test_moe_decode_rows_of_several_tokens > $OUT/gpu_tests.log 2>&1; tail -1 $OUT/gpu_tests.log | tee -a $OUT/summary.log
for run in new cur new cur; do
  dir=.; [[ $run == base ]] && dir=ab/base; [[ $run == cur ]] && dir=ab/cur
  (cd $dir && PYTHONPATH=/tmp/site:. timeout 50 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= --config.bench.output_dir=/tmp/e2e_$run 2>&1 | grep "decode batch" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
