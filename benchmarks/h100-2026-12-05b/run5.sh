#!/bin/bash
# Right after run4 on the same machine (the merge kernel tree): the full 20b table, 120b batch 1.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl
export PYTHONPATH=/tmp/site:.
timeout 165 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.output_dir=$OUT/e2e_20b > $OUT/e2e_20b.log 2>&1
timeout 55 python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= > $OUT/e2e_120b.log 2>&1
