#!/bin/bash
# generate's decode chunks: HEAD (each chunk launched after the last is read) against the tree
# (the next chunk launched before), alternated.
# ab/gen_warm.py is this folder's run2_gen_warm.py; ab/base a copy of HEAD (git archive).
REPO=$(pwd)
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
for run in base new base new; do
  dir=.; [[ $run == base ]] && dir=ab/base
  (cd $dir && PYTHONPATH=/tmp/site:. timeout 100 python $REPO/ab/gen_warm.py 2>&1 | grep "^max_len" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
for run in base new base new; do
  dir=.; [[ $run == base ]] && dir=ab/base
  (cd $dir && PYTHONPATH=/tmp/site:. timeout 60 python -m experiments.generate --config=configs/generate.py:gpt_oss_20b --max_new_tokens=200 --prompt="What is MXFP4?" 2>&1 | grep "summary:" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
for run in base new; do
  dir=.; [[ $run == base ]] && dir=ab/base
  (cd $dir && PYTHONPATH=/tmp/site:. timeout 60 python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py --config.bench.batch_sizes=1 --config.bench.prefill_lengths= 2>&1 | grep "decode batch" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
