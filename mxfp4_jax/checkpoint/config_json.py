"""``config.json`` of either checkpoint layout <-> one dict of canonical hyperparameters.

The HF and ``original/`` configs name the same numbers differently (``num_local_experts`` vs
``num_experts``, ``rope_scaling.beta_slow`` vs ``rope_ntk_alpha``, ...); the model reads only the
canonical dict, so a config is validated once here, with one-line errors naming the file and key.
The writers produce configs shaped like the published ones so that test checkpoints look real.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping

from mxfp4_jax.argcheck import is_real
from mxfp4_jax.checkpoint.errors import CheckpointError
from mxfp4_jax.kernels.swiglu import SWIGLU_ALPHA
from mxfp4_jax.model.config import GptOssConfig, yarn_context_length
from mxfp4_jax.model.rope import yarn_concentration

HPARAM_KEYS = GptOssConfig.HPARAMS  # the model's hyperparameters: one list, in the model
_INT_KEYS = frozenset(f.name for f in dataclasses.fields(GptOssConfig)
                      if f.name in HPARAM_KEYS and f.type == "int")  # annotations as strings

HF_ARCHITECTURE = "GptOssForCausalLM"
HF_MODEL_TYPE = "gpt_oss"
ORIGINAL_RMS_NORM_EPS = 1e-5  # the original config has no eps key; its code hard-codes this

# canonical key -> HF key (rope keys live under "rope_scaling")
_HF_KEYS = {
    "vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
    "num_experts": "num_local_experts", "experts_per_token": "num_experts_per_tok",
    "intermediate_size": "intermediate_size", "num_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads", "head_dim": "head_dim",
    "sliding_window": "sliding_window", "rope_theta": "rope_theta",
    "rms_norm_eps": "rms_norm_eps", "swiglu_limit": "swiglu_limit",
}
_HF_ROPE_KEYS = {
    "rope_scaling_factor": "factor", "rope_original_context": "original_max_position_embeddings",
    "rope_beta_fast": "beta_fast", "rope_beta_slow": "beta_slow",
}
_ORIGINAL_KEYS = {
    "vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
    "num_experts": "num_experts", "experts_per_token": "experts_per_token",
    "intermediate_size": "intermediate_size", "num_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads", "head_dim": "head_dim",
    "sliding_window": "sliding_window", "rope_theta": "rope_theta",
    "rope_scaling_factor": "rope_scaling_factor",
    "rope_original_context": "initial_context_length", "rope_beta_fast": "rope_ntk_beta",
    "rope_beta_slow": "rope_ntk_alpha", "swiglu_limit": "swiglu_limit",
}
# Attention and router stay bf16 in the published mxfp4 checkpoints; only the experts are MXFP4.
HF_MODULES_NOT_CONVERTED = ("model.layers.*.self_attn", "model.layers.*.mlp.router",
                            "model.embed_tokens", "lm_head")


def _number(config: dict, key: str, canonical: str, source: str, where: str = ""):
  if key not in config:
    raise CheckpointError(f"{source}: missing key {where}{key}")
  value = config[key]
  if not is_real(value):
    raise CheckpointError(f"{source}: {where}{key} must be a number, got {value!r}")
  if canonical in _INT_KEYS:
    if not float(value).is_integer():
      raise CheckpointError(f"{source}: {where}{key} must be an integer, got {value!r}")
    return int(value)
  return float(value)


def config_layout(config: dict, source: str = "config.json") -> str:
  """"hf" or "original", from the keys each layout has and the other lacks."""
  if any(k in config for k in ("architectures", "model_type", "num_local_experts")):
    return "hf"
  if "num_experts" in config:
    return "original"
  raise CheckpointError(f"{source}: neither an HF config (architectures/model_type) "
                        "nor an original one (num_experts)")


def _check_hf(config: dict, source: str) -> None:
  architectures = config.get("architectures") or []
  if not (isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)):
    raise CheckpointError(f"{source}: architectures must be a list of names, got "
                          f"{architectures!r:.60}")
  # swiglu_alpha is not a hyperparameter read from checkpoints (GPT-OSS's is 1.702, the model
  # config's default); a config that asks for another is refused rather than run with the
  # wrong activation.
  alpha = config.get("swiglu_alpha", SWIGLU_ALPHA)
  if alpha != SWIGLU_ALPHA:
    raise CheckpointError(f"{source}: swiglu_alpha is {alpha!r}; GPT-OSS's SwiGLU has "
                          f"{SWIGLU_ALPHA}")
  if HF_ARCHITECTURE not in architectures and config.get("model_type") != HF_MODEL_TYPE:
    raise CheckpointError(f"{source}: architectures {architectures!r} (model_type "
                          f"{config.get('model_type')!r}) is not {HF_ARCHITECTURE}")
  quant = config.get("quantization_config")
  if quant is not None:
    method = quant.get("quant_method") if isinstance(quant, dict) else None
    if method != "mxfp4":
      raise CheckpointError(
          f"{source}: quantization_config.quant_method is {method!r}, expected 'mxfp4'")


def _check_hf_rope(rope, source: str, where: str) -> dict:
  """The YaRN keys under ``where`` ("rope_scaling" or transformers 5's "rope_parameters")."""
  if not isinstance(rope, dict):
    raise CheckpointError(f"{source}: {where} must be an object, got {rope!r:.60}")
  rope_type = rope.get("rope_type", rope.get("type"))
  if rope_type != "yarn":
    raise CheckpointError(f"{source}: {where}.rope_type is {rope_type!r}, expected 'yarn'")
  # GPT-OSS's YaRN ramp is not rounded to whole dims; transformers rounds it unless the config
  # says "truncate": false, so a config without the key means a different RoPE.
  if rope.get("truncate", True) is not False:
    given = repr(rope["truncate"]) if "truncate" in rope else "missing"
    raise CheckpointError(f"{source}: {where}.truncate is {given}; GPT-OSS's YaRN needs the "
                          "JSON boolean false (a missing key reads as true)")
  # The attention scale of GPT-OSS's YaRN is `yarn_concentration`; these keys would give
  # transformers another.
  for key in ("mscale", "mscale_all_dim"):
    if rope.get(key) is not None:
      raise CheckpointError(f"{source}: {where}.{key} is {rope[key]!r}; GPT-OSS's YaRN "
                            "has no such key (its attention scale is 0.1 ln(factor) + 1)")
  factor, attention_factor = rope.get("factor"), rope.get("attention_factor")
  if attention_factor is not None and is_real(factor) and factor > 0:
    expected = yarn_concentration(factor)
    if not (is_real(attention_factor)
            and math.isclose(attention_factor, expected, rel_tol=1e-6)):
      raise CheckpointError(f"{source}: {where}.attention_factor is {attention_factor!r}; "
                            f"GPT-OSS's YaRN uses 0.1 ln(factor) + 1 = {expected:.6g}")
  return rope


def _check_layer_types(config: dict, num_layers: int, source: str) -> None:
  """The model fixes which layers slide (`GptOssConfig.is_sliding`); a config saying otherwise is
  refused."""
  layer_types = config.get("layer_types")
  if layer_types is None:
    return
  if not isinstance(layer_types, list) or list(layer_types) != hf_layer_types(num_layers):
    raise CheckpointError(
        f"{source}: layer_types must list num_hidden_layers={num_layers} layers, sliding on even "
        f"ones and full on odd ones; got {layer_types!r:.80}")


def _with_rope_scaling(config: dict, source: str) -> tuple[dict, str]:
  """(The config with ``rope_scaling`` and ``rope_theta`` at the top level, the key the YaRN
  keys came from). transformers 5 saves both inside ``rope_parameters`` instead (a null
  ``rope_scaling`` beside it is no rope_scaling); the published configs have them at the top."""
  if config.get("rope_scaling") is None and "rope_parameters" in config:
    rope = config["rope_parameters"]
    if not isinstance(rope, dict):
      raise CheckpointError(f"{source}: rope_parameters must be an object, got {rope!r:.60}")
    theta = {"rope_theta": rope["rope_theta"]} if "rope_theta" in rope else {}
    return {**theta, **config, "rope_scaling": rope}, "rope_parameters"
  if "rope_scaling" not in config:
    raise CheckpointError(f"{source}: missing key rope_scaling (or rope_parameters)")
  return config, "rope_scaling"


def _validate(hp: dict, keys: dict, source: str) -> None:
  """`GptOssConfig`'s own checks (one set of rules), its message naming the file's keys."""
  try:
    GptOssConfig.from_dict(hp)
  except (TypeError, ValueError) as e:
    message = re.sub(r"\b\w+\b", lambda word: keys.get(word[0], word[0]), str(e))
    raise CheckpointError(f"{source}: {message}") from None


def parse_config(config, source: str = "config.json") -> dict:
  """A loaded config.json of either layout -> the canonical hyperparameter dict."""
  if not isinstance(config, dict):
    raise CheckpointError(f"{source}: expected a JSON object, got {type(config).__name__}")
  if config_layout(config, source) == "hf":
    _check_hf(config, source)
    config, where = _with_rope_scaling(config, source)
    rope = _check_hf_rope(config["rope_scaling"], source, where)
    hp = {k: _number(config, key, k, source) for k, key in _HF_KEYS.items()}
    hp.update({k: _number(rope, key, k, source, f"{where}.") for k, key in _HF_ROPE_KEYS.items()})
    _check_layer_types(config, hp["num_layers"], source)
    keys = {**_HF_KEYS, **{k: f"{where}.{v}" for k, v in _HF_ROPE_KEYS.items()}}
  else:
    hp = {k: _number(config, key, k, source) for k, key in _ORIGINAL_KEYS.items()}
    hp["rms_norm_eps"] = (_number(config, "rms_norm_eps", "rms_norm_eps", source)
                          if "rms_norm_eps" in config else ORIGINAL_RMS_NORM_EPS)
    keys = _ORIGINAL_KEYS
  hp = {k: hp[k] for k in HPARAM_KEYS}
  _validate(hp, keys, source)
  return hp


def read_config(path: str | os.PathLike) -> dict:
  """``config.json`` file of either layout -> the canonical hyperparameter dict."""
  source = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  except FileNotFoundError:
    raise CheckpointError(f"{source}: no such file") from None
  except OSError as e:
    raise CheckpointError(f"{source}: unreadable ({e.strerror})") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{source}: not valid JSON ({e})") from None
  return parse_config(config, source)


# --- writers ------------------------------------------------------------------------------------


def _canonical(hparams, writer: str) -> dict:
  """The writers' input: the canonical keys, each one there (no KeyError midway)."""
  if not isinstance(hparams, Mapping):
    raise TypeError(f"{writer}: hparams must be a dict, got {type(hparams).__name__}")
  missing = [k for k in HPARAM_KEYS if k not in hparams]
  if missing:
    raise ValueError(f"{writer}: hparams is missing {', '.join(missing)}")
  return {k: hparams[k] for k in HPARAM_KEYS}


def hf_layer_types(num_layers: int) -> list[str]:
  return ["sliding_attention" if GptOssConfig.is_sliding(i) else "full_attention"
          for i in range(num_layers)]


def to_hf_config(hparams: dict) -> dict:
  """Canonical hyperparameters -> an HF ``config.json`` dict shaped like the published ones."""
  hp = _canonical(hparams, "to_hf_config")
  config = {_HF_KEYS[k]: hp[k] for k in _HF_KEYS}
  config.update({
      "architectures": [HF_ARCHITECTURE],
      "model_type": HF_MODEL_TYPE,
      "attention_bias": True,
      "attention_dropout": 0.0,
      "experts_per_token": hp["experts_per_token"],
      "hidden_act": "silu",
      "initial_context_length": hp["rope_original_context"],
      "initializer_range": 0.02,
      "layer_types": hf_layer_types(hp["num_layers"]),
      "max_position_embeddings": yarn_context_length(hp["rope_original_context"],
                                                     hp["rope_scaling_factor"]),
      "output_router_logits": False,
      "quantization_config": {"quant_method": "mxfp4",
                              "modules_to_not_convert": list(HF_MODULES_NOT_CONVERTED)},
      "rope_scaling": {"rope_type": "yarn", "truncate": False,
                       **{_HF_ROPE_KEYS[k]: hp[k] for k in _HF_ROPE_KEYS}},
      "router_aux_loss_coef": 0.9,
      "tie_word_embeddings": False,
      "torch_dtype": "bfloat16",
      "use_cache": True,
  })
  return dict(sorted(config.items()))


def to_original_config(hparams: dict) -> dict:
  """Canonical hyperparameters -> an ``original/config.json`` dict.

  The original format has no eps key (its code hard-codes 1e-5); one is written only when the
  hyperparameters differ from that, so that they still round-trip.
  """
  hp = _canonical(hparams, "to_original_config")
  config = {key: hp[k] for k, key in _ORIGINAL_KEYS.items()}
  if hp["rms_norm_eps"] != ORIGINAL_RMS_NORM_EPS:
    config["rms_norm_eps"] = hp["rms_norm_eps"]
  return config
