"""The model against Hugging Face transformers' GptOssForCausalLM on the same tiny checkpoint.

The checkpoint (tests/golden/tiny_hf, HF layout, MXFP4 experts) was written by a script that
does not use mxfp4_jax; the logits are HF's, in float32 and bfloat16, T = 320 tokens so that the
sliding window (8 here) matters. tests/golden/regenerate.sh rebuilds both.

Random-weight models are chaotic in bf16 (router top-k flips), so fidelity is proven in float32
and bf16 is held to the noise of HF's own bf16 run.
"""

import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

import mxfp4_jax
from numerics import rel_err

GOLDEN = pathlib.Path(__file__).parent / "golden"


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


def _as_original_checkpoint(hf_dir: pathlib.Path, out: pathlib.Path) -> None:
  """The golden HF checkpoint rewritten in OpenAI's ``original/`` layout by a mapping written out
  here from that layout's documentation, not through `mxfp4_jax.checkpoint.names`: q, k and v
  rows stacked into one qkv linear, norms as float32 ``*.scale``, the router as ``mlp.gate``,
  the experts' bytes unchanged under ``mlp1``/``mlp2``."""
  import ml_dtypes  # noqa: F401  (numpy reads bfloat16 tensors once it is registered)
  from safetensors.numpy import load_file, save_file
  hf = {k: v for f in sorted(hf_dir.glob("*.safetensors")) for k, v in load_file(f).items()}
  config = json.loads((hf_dir / "config.json").read_text())
  tensors = {"embedding.weight": hf["model.embed_tokens.weight"],
             "norm.scale": hf["model.norm.weight"].astype(np.float32),
             "unembedding.weight": hf["lm_head.weight"]}
  for n in range(config["num_hidden_layers"]):
    layer, attn, mlp = f"model.layers.{n}.", f"model.layers.{n}.self_attn.", f"model.layers.{n}.mlp."
    for part in ("weight", "bias"):
      tensors[f"block.{n}.attn.qkv.{part}"] = np.concatenate(
          [hf[f"{attn}{x}_proj.{part}"] for x in "qkv"], axis=0)
      tensors[f"block.{n}.attn.out.{part}"] = hf[f"{attn}o_proj.{part}"]
      tensors[f"block.{n}.mlp.gate.{part}"] = hf[f"{mlp}router.{part}"]
    tensors[f"block.{n}.attn.sinks"] = hf[attn + "sinks"]
    tensors[f"block.{n}.attn.norm.scale"] = hf[layer + "input_layernorm.weight"].astype(np.float32)
    tensors[f"block.{n}.mlp.norm.scale"] = hf[layer + "post_attention_layernorm.weight"].astype(
        np.float32)
    for original, ours in (("mlp1", "gate_up_proj"), ("mlp2", "down_proj")):
      tensors[f"block.{n}.mlp.{original}_weight.blocks"] = hf[f"{mlp}experts.{ours}_blocks"]
      tensors[f"block.{n}.mlp.{original}_weight.scales"] = hf[f"{mlp}experts.{ours}_scales"]
      tensors[f"block.{n}.mlp.{original}_bias"] = hf[f"{mlp}experts.{ours}_bias"]
  out.mkdir(parents=True)
  save_file(tensors, out / "model.safetensors")
  rope = config["rope_scaling"]
  (out / "config.json").write_text(json.dumps({
      "num_hidden_layers": config["num_hidden_layers"], "num_experts": config["num_local_experts"],
      "experts_per_token": config["num_experts_per_tok"], "vocab_size": config["vocab_size"],
      "hidden_size": config["hidden_size"], "intermediate_size": config["intermediate_size"],
      "swiglu_limit": config["swiglu_limit"], "head_dim": config["head_dim"],
      "num_attention_heads": config["num_attention_heads"],
      "num_key_value_heads": config["num_key_value_heads"],
      "sliding_window": config["sliding_window"],
      "initial_context_length": rope["original_max_position_embeddings"],
      "rope_theta": config["rope_theta"], "rope_scaling_factor": rope["factor"],
      "rope_ntk_alpha": rope["beta_slow"], "rope_ntk_beta": rope["beta_fast"]}))


def test_original_layout_matches_hf(golden, tmp_path):
  """The same weights in the original/ layout (inside an HF repo's ``original/`` folder, as
  published) give HF transformers' float32 logits."""
  _as_original_checkpoint(GOLDEN / "tiny_hf", tmp_path / "gpt-oss-tiny" / "original")
  model = mxfp4_jax.load_model(tmp_path / "gpt-oss-tiny", dtype="float32", progress=False)
  logits = np.asarray(model(jnp.asarray(golden["tokens"])))
  assert rel_err(logits, golden["logits_f32"].astype(np.float64)) <= 1e-4
