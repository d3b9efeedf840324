#!/usr/bin/env bash
# Regenerates the golden fixtures of tests/test_golden.py: a tiny random GPT-OSS checkpoint in
# the HF layout, written by a script independent of mxfp4_jax, and the logits that Hugging Face
# transformers' GptOssForCausalLM computes on it (float32 and bfloat16, CPU).
#
# HF_PYTHON is a Python 3.11 with torch (CPU) and transformers, e.g.:
#   python3.11 -m venv /tmp/hf && /tmp/hf/bin/pip install torch==2.13.0 transformers==5.23.0 \
#       safetensors numpy
#   HF_PYTHON=/tmp/hf/bin/python bash tests/golden/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")"
: "${HF_PYTHON:?set HF_PYTHON to a Python with torch and transformers}"
SEED=20261123
rm -rf tiny_hf
"$HF_PYTHON" make_tiny_hf_checkpoint.py --out tiny_hf --seed "$SEED"
"$HF_PYTHON" -c "import numpy as np; np.save('tokens.npy', np.random.default_rng($SEED).integers(0, 256, (1, 320), dtype=np.int32))"
"$HF_PYTHON" hf_logits.py --checkpoint tiny_hf --tokens tokens.npy --out tiny_hf_logits.npz
rm tokens.npy
