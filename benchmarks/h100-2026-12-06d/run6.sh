#!/bin/bash
# generate before (HEAD~1: a 7-step last chunk, a second decode compile) and after, alternated.
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
for run in base new base new; do
  dir=.; [[ $run == base ]] && dir=ab/base
  (cd $dir && PYTHONPATH=/tmp/site:. timeout 60 python -m experiments.generate --config=configs/generate.py:gpt_oss_20b --max_new_tokens=40 --prompt="What is MXFP4?" 2>&1 | grep "summary:" | sed "s/^/$run /") | tee -a $OUT/summary.log
done
