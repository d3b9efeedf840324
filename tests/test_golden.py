"""The model against Hugging Face transformers' GptOssForCausalLM on the same tiny checkpoint.

The checkpoint (tests/golden/tiny_hf, HF layout, MXFP4 experts) was written by a script that
does not use mxfp4_jax; the logits are HF's, in float32 and bfloat16, T = 320 tokens so that the
sliding window (8 here) matters. tests/golden/regenerate.sh rebuilds both.

Random-weight models are chaotic in bf16 (router top-k flips), so fidelity is proven in float32
and bf16 is held to the noise of HF's own bf16 run.
"""

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

import mxfp4_jax

GOLDEN = pathlib.Path(__file__).parent / "golden"


def rel_err(a, b):
  return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def golden():
  return np.load(GOLDEN / "tiny_hf_logits.npz")


def test_float32_matches_hf(golden):
  model = mxfp4_jax.load_model(GOLDEN / "tiny_hf", dtype="float32", progress=False)
  logits = np.asarray(model(jnp.asarray(golden["tokens"])))
  want = golden["logits_f32"].astype(np.float64)
  assert rel_err(logits, want) <= 1e-4
  assert np.array_equal(logits.argmax(-1), want.argmax(-1))


def test_bfloat16_within_hf_own_bf16_noise(golden):
  model = mxfp4_jax.load_model(GOLDEN / "tiny_hf", dtype="bfloat16", progress=False)
  logits = np.asarray(model(jnp.asarray(golden["tokens"])))
  want = golden["logits_f32"].astype(np.float64)
  hf_noise = rel_err(golden["logits_bf16"], want)
  assert 0 < hf_noise < 0.2
  assert rel_err(logits, want) <= 1.5 * hf_noise
