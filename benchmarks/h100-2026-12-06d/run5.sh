#!/bin/bash
# generate on the 20b random model after the whole-last-chunk change: 39 decode steps in chunks
# of 16 (the last runs 16 and keeps 7).
pip install -q --no-deps --target /tmp/site .whl/ml_collections-1.1.0-py3-none-any.whl 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/summary.log
s=$SECONDS
PYTHONPATH=/tmp/site:. timeout 150 python -m experiments.generate --config=configs/generate.py:gpt_oss_20b --max_new_tokens=40 --prompt="What is MXFP4?" > $OUT/generate_20b.log 2>&1
echo "generate rc=$? $((SECONDS-s))s" | tee -a $OUT/summary.log
grep -h "model:\|summary:" $OUT/generate_20b.log | tee -a $OUT/summary.log
