"""Checkpoints: both GPT-OSS layouts load to one canonical dict, and every defect is named."""

import json
import re
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mxfp4_jax import checkpoint as ckpt
from mxfp4_jax.checkpoint import config_json

SEED = 1234
HPARAMS = dict(
    vocab_size=256, hidden_size=64, num_layers=2, num_experts=4, experts_per_token=2,
    intermediate_size=64, num_heads=4, num_kv_heads=2, head_dim=16, sliding_window=8,
    rope_theta=150000.0, rope_scaling_factor=32.0, rope_original_context=4096, rope_beta_fast=32.0,
    rope_beta_slow=1.0, rms_norm_eps=1e-5, swiglu_limit=7.0,
)
Q, KV = HPARAMS["num_heads"] * HPARAMS["head_dim"], HPARAMS["num_kv_heads"] * HPARAMS["head_dim"]


def load(path, **kwargs):
  return dict(ckpt.iter_canonical(path, progress=False, **kwargs))


def assert_identical(a, b, name):
  assert a.dtype == b.dtype, name
  assert a.shape == b.shape, name
  assert a.tobytes() == b.tobytes(), name


def raises_naming(*fragments):
  """A CheckpointError whose one-line message names every fragment."""
  pattern = "".join(f"(?=.*{re.escape(f)})" for f in fragments)
  return pytest.raises(ckpt.CheckpointError, match=pattern)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  """One HF repo (2 shards) and one repo holding only original/, from the same seed."""
  root = tmp_path_factory.mktemp("checkpoints")
  hf = ckpt.write_random_checkpoint(root / "hf", HPARAMS, "hf", SEED, num_shards=2)
  original = ckpt.write_random_checkpoint(root / "repo", HPARAMS, "original", SEED, nested=True)
  return dict(hf=hf, original=original, repo=root / "repo", hf_dict=load(hf),
              original_dict=load(root / "repo"))


# --- round trip -----------------------------------------------------------------------------------


def test_layouts_load_to_the_same_canonical_dict(written):
  shapes = ckpt.canonical_shapes(HPARAMS)
  hf, original = written["hf_dict"], written["original_dict"]
  assert list(hf) == list(original) == list(shapes)
  for name, (shape, kind) in shapes.items():
    assert hf[name].shape == shape, name
    assert (hf[name].dtype == np.uint8) == (kind == "mxfp4"), name
    assert_identical(hf[name], original[name], name)


def test_canonical_dict_is_the_written_one(written):
  expected = ckpt.random_canonical(HPARAMS, SEED)
  for name, array in written["hf_dict"].items():
    assert_identical(array, expected[name], name)
  assert written["hf_dict"]["norm"].dtype == np.float32
  assert written["hf_dict"]["layers.0.qkv.weight"].dtype.name == "bfloat16"


def test_dense_linears_compute_x_at_w_like_torch(written, rng):
  """HF q/k/v/o and router are torch Linears (y = x W^T + b); canonical q/k/v/o weights give
  y = x W + b, and the router's is kept as stored (its decode product sums along its rows)."""
  raw = {}
  for file in written["hf"].glob("*.safetensors"):
    raw.update({k: v.astype(np.float64) for k, v in load_file(file).items()})
  c = {k: v.astype(np.float64) for k, v in written["hf_dict"].items()}
  a, m = "model.layers.1.self_attn.", "model.layers.1.mlp."
  x = rng.standard_normal((3, HPARAMS["hidden_size"]))
  qkv = np.concatenate(
      [x @ raw[f"{a}{p}_proj.weight"].T + raw[f"{a}{p}_proj.bias"] for p in "qkv"], axis=-1)
  np.testing.assert_allclose(x @ c["layers.1.qkv.weight"] + c["layers.1.qkv.bias"], qkv,
                             rtol=1e-12)
  np.testing.assert_array_equal(c["layers.1.router.weight"], raw[m + "router.weight"])
  h = rng.standard_normal((3, Q))
  np.testing.assert_allclose(h @ c["layers.1.out.weight"], h @ raw[a + "o_proj.weight"].T,
                             rtol=1e-12)
  original = load_file(written["original"] / "model.safetensors")
  np.testing.assert_array_equal(original["block.1.attn.qkv.weight"].T,
                                written["hf_dict"]["layers.1.qkv.weight"])


def test_mxfp4_bytes_pass_through_untouched(written):
  original = load_file(written["original"] / "model.safetensors")
  pairs = [("gate_up.blocks", "mlp1_weight.blocks"), ("gate_up.scales", "mlp1_weight.scales"),
           ("down.blocks", "mlp2_weight.blocks"), ("down.scales", "mlp2_weight.scales")]
  for canonical, disk in pairs:
    for i in range(HPARAMS["num_layers"]):
      assert_identical(written["hf_dict"][f"layers.{i}.{canonical}"],
                       original[f"block.{i}.mlp.{disk}"], disk)


def test_norm_scales_are_bf16_in_hf_and_float32_in_original(written):
  original = load_file(written["original"] / "model.safetensors")
  hf = {}
  for file in written["hf"].glob("*.safetensors"):
    hf.update(load_file(file))
  assert original["block.0.attn.norm.scale"].dtype == np.float32
  assert hf["model.layers.0.input_layernorm.weight"].dtype.name == "bfloat16"


def test_hf_index_is_honored(written, tmp_path):
  index = json.loads((written["hf"] / "model.safetensors.index.json").read_text())
  files = sorted(written["hf"].glob("model-*-of-00002.safetensors"))
  assert [f.name for f in files] == sorted(set(index["weight_map"].values()))
  assert len(files) == 2
  # Move a tensor to the other shard and say so in the index: it still loads, to the same values.
  moved = shutil.copytree(written["hf"], tmp_path / "moved")
  name = "model.layers.0.self_attn.k_proj.weight"
  source = moved / index["weight_map"][name]
  target = next(f for f in (moved / f.name for f in files) if f != source)
  source_tensors, target_tensors = load_file(source), load_file(target)
  target_tensors[name] = source_tensors.pop(name)
  save_file(source_tensors, source)
  save_file(target_tensors, target)
  index["weight_map"][name] = target.name
  (moved / "model.safetensors.index.json").write_text(json.dumps(index))
  for key, array in load(moved).items():
    assert_identical(array, written["hf_dict"][key], key)
  # An index that points elsewhere is refused, naming the tensor.
  index["weight_map"][name] = source.name
  (moved / "model.safetensors.index.json").write_text(json.dumps(index))
  with raises_naming(name):
    ckpt.iter_canonical(moved, progress=False)


def test_hf_index_with_dot_slash_paths_or_no_mapping(written, tmp_path):
  """Shards named "./model-...": the same files. A weight_map that is no name -> file mapping:
  refused in one line."""
  repo = shutil.copytree(written["hf"], tmp_path / "hf")
  index_file = repo / "model.safetensors.index.json"
  index = json.loads(index_file.read_text())
  index_file.write_text(json.dumps(dict(index, weight_map={
      k: "./" + v for k, v in index["weight_map"].items()})))
  for key, array in load(repo).items():
    assert_identical(array, written["hf_dict"][key], key)
  index_file.write_text(json.dumps(dict(index, weight_map=sorted(index["weight_map"]))))
  with raises_naming("model.safetensors.index.json", "weight_map must map tensor names"):
    ckpt.iter_canonical(repo, progress=False)
  index_file.unlink()
  index_file.mkdir()  # there, but no file
  with raises_naming("model.safetensors.index.json", "unreadable"):
    ckpt.iter_canonical(repo, progress=False)


def test_hf_index_naming_a_missing_shard(written, tmp_path):
  broken = shutil.copytree(written["hf"], tmp_path / "broken")
  (broken / "model-00002-of-00002.safetensors").unlink()
  with raises_naming("model-00002-of-00002.safetensors"):
    ckpt.iter_canonical(broken, progress=False)


def test_single_file_hf_checkpoint(written, tmp_path):
  path = ckpt.write_random_checkpoint(tmp_path, HPARAMS, "hf", SEED, num_shards=1)
  assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
  assert ckpt.detect_layout(path) == "hf"
  for key, array in load(path).items():
    assert_identical(array, written["hf_dict"][key], key)


@pytest.mark.parametrize("args, error, message", [
    (dict(num_shards=0), ValueError, r"num_shards must be in \[1, \d+\], got 0"),
    (dict(num_shards=2.0), TypeError, "num_shards must be an int or None, got 2.0"),
    (dict(num_shards=True), TypeError, "num_shards must be an int or None, got True"),
    (dict(nested=True), ValueError, "True only for the original layout, got True with "
                                    "layout='hf'")])
def test_random_checkpoint_refuses_what_it_would_ignore(tmp_path, args, error, message):
  """Refused before anything in the folder is touched."""
  (tmp_path / "model.safetensors").write_bytes(b"kept")
  with pytest.raises(error, match=message):
    ckpt.write_random_checkpoint(tmp_path, HPARAMS, "hf", SEED, **args)
  assert (tmp_path / "model.safetensors").read_bytes() == b"kept"


@pytest.mark.parametrize("with_index", [True, False])
def test_sharded_original_checkpoint(written, tmp_path, with_index):
  """original/ in shards, as gpt-oss-120b's (model--0000k-of-0000n.safetensors), with or without
  the index: the layout is told by tensor names, and the index is read in either layout."""
  path = ckpt.write_random_checkpoint(tmp_path, HPARAMS, "original", SEED, num_shards=3,
                                      nested=True)
  assert sorted(p.name for p in path.glob("*.safetensors")) == [
      f"model--0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
  if not with_index:
    (path / "model.safetensors.index.json").unlink()
  for where in (path, tmp_path):  # original/ itself, or a repo holding only original/
    assert ckpt.detect_layout(where) == "original"
    for key, array in load(where).items():
      assert_identical(array, written["hf_dict"][key], key)


def test_rewriting_a_checkpoint_leaves_no_stale_shard(tmp_path):
  ckpt.write_random_checkpoint(tmp_path, HPARAMS, "hf", SEED, num_shards=2)
  path = ckpt.write_random_checkpoint(tmp_path, HPARAMS, "hf", SEED + 1, num_shards=1)
  assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
  expected = ckpt.random_canonical(HPARAMS, SEED + 1)
  assert_identical(load(path)["embedding"], expected["embedding"], "embedding")


def test_an_index_beside_a_single_file_is_refused(written, tmp_path):
  """Which of the two holds the weights is ambiguous (one of them is likely stale)."""
  repo = shutil.copytree(written["hf"], tmp_path / "hf")
  shutil.copy(written["original"] / "model.safetensors", repo / "model.safetensors")
  with raises_naming(str(repo), "model.safetensors.index.json", "single model.safetensors"):
    ckpt.detect_layout(repo)


@pytest.mark.parametrize("layout", ["hf", "original"])
def test_numpy_hyperparameters_write_a_readable_config(written, tmp_path, layout):
  """NumPy numbers pass the hyperparameter checks; config.json gets them as JSON numbers."""
  as_numpy = {k: (np.int64(v) if isinstance(v, int) else np.float64(v)) for k, v in HPARAMS.items()}
  path = ckpt.write_random_checkpoint(tmp_path, as_numpy, layout, SEED, num_shards=1)
  assert ckpt.read_hparams(path) == ckpt.read_hparams(written["hf"])
  for key, array in load(path).items():
    assert_identical(array, written["hf_dict"][key], key)


def test_detect_layout(written, tmp_path):
  assert ckpt.detect_layout(written["hf"]) == "hf"
  assert ckpt.detect_layout(written["repo"]) == "original"
  assert ckpt.detect_layout(written["original"]) == "original"
  # A published repo: HF files at the top and original/ beside them; the HF files win.
  repo = shutil.copytree(written["hf"], tmp_path / "repo")
  shutil.copytree(written["original"], repo / "original")
  assert ckpt.detect_layout(repo) == "hf"
  (tmp_path / "empty").mkdir()
  with raises_naming("empty", "safetensors"):
    ckpt.detect_layout(tmp_path / "empty")


def test_truncated_load_reads_only_the_first_layers(written, tmp_path):
  partial = load(written["hf"], num_layers=1)
  assert list(partial) == list(ckpt.canonical_shapes(HPARAMS, num_layers=1))
  with raises_naming("num_layers=3"):
    ckpt.iter_canonical(written["hf"], num_layers=3, progress=False)
  for bad in ("2", 1.0, True):
    with pytest.raises(ValueError, match=f"num_layers must be an int or None, got {bad!r}"):
      ckpt.iter_canonical(written["hf"], num_layers=bad, progress=False)
  # The layers it does not read are checked all the same.
  repo = shutil.copytree(written["hf"], tmp_path / "hf")
  index = json.loads((repo / "model.safetensors.index.json").read_text())
  name = "model.layers.1.mlp.router.bias"
  file = repo / index["weight_map"][name]
  tensors = load_file(file)
  tensors[name] = tensors[name][:1]
  save_file(tensors, file)
  with raises_naming(name, "has shape (1,)"):
    ckpt.iter_canonical(repo, num_layers=1, progress=False)


def test_progress_bar(written, capfd):
  next(ckpt.iter_canonical(written["hf"], progress=True))
  assert "loading hf checkpoint" in capfd.readouterr().err


# --- config.json ----------------------------------------------------------------------------------


def test_configs_of_both_layouts_parse_to_the_same_hparams(written):
  hf, original = ckpt.read_hparams(written["hf"]), ckpt.read_hparams(written["repo"])
  assert hf == original == HPARAMS
  assert list(hf) == list(ckpt.HPARAM_KEYS)
  assert {type(v) for k, v in hf.items() if k in ("num_layers", "rope_original_context")} == {int}


def test_writers_round_trip_and_look_real():
  hparams = dict(HPARAMS, rms_norm_eps=1e-6)
  hf, original = config_json.to_hf_config(hparams), config_json.to_original_config(hparams)
  assert ckpt.parse_config(hf) == ckpt.parse_config(original) == hparams
  assert hf["layer_types"] == ["sliding_attention", "full_attention"]
  assert hf["quantization_config"]["quant_method"] == "mxfp4"
  assert hf["tie_word_embeddings"] is False and hf["model_type"] == "gpt_oss"
  assert "rms_norm_eps" not in config_json.to_original_config(HPARAMS)
  assert ckpt.parse_config(config_json.to_original_config(HPARAMS))["rms_norm_eps"] == 1e-5
  for write in (config_json.to_hf_config, config_json.to_original_config):
    with pytest.raises(ValueError, match=f"{write.__name__}: hparams is missing rope_theta$"):
      write({k: v for k, v in HPARAMS.items() if k != "rope_theta"})
    with pytest.raises(TypeError, match=f"{write.__name__}: hparams must be a dict, got list"):
      write(list(HPARAMS))


def test_a_transformers_5_config_and_yarn_keys_that_change_nothing_parse_the_same():
  """transformers 5 saves rope_theta and the YaRN keys inside rope_parameters; an
  attention_factor equal to GPT-OSS's own 0.1 ln(32) + 1, a null mscale and swiglu_alpha 1.702
  are what the model does anyway."""
  config = config_json.to_hf_config(HPARAMS)
  config["rope_parameters"] = dict(config.pop("rope_scaling"), rope_theta=config.pop("rope_theta"))
  assert ckpt.parse_config(config) == HPARAMS
  assert ckpt.parse_config(dict(config, rope_scaling=None)) == HPARAMS
  config = _hf_config(swiglu_alpha=1.702, **{"rope_scaling.attention_factor": 1.3465735902799727})
  config["rope_scaling"]["mscale_all_dim"] = None
  assert ckpt.parse_config(config) == HPARAMS


def _hf_config(**changes):
  config = config_json.to_hf_config(HPARAMS)
  if changes.pop("transformers_5", False):
    config["rope_parameters"] = config.pop("rope_scaling")
  for key, value in changes.items():
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    if value is None:
      del node[leaf]
    else:
      node[leaf] = value
  return config


@pytest.mark.parametrize("config, fragments", [
    (_hf_config(architectures=["LlamaForCausalLM"], model_type="llama"), ["LlamaForCausalLM"]),
    (_hf_config(**{"rope_scaling.rope_type": "linear"}), ["rope_scaling.rope_type", "linear"]),
    (_hf_config(**{"quantization_config.quant_method": "gptq"}),
     ["quantization_config.quant_method"]),
    (_hf_config(num_local_experts=None), ["missing key num_local_experts"]),
    (_hf_config(**{"rope_scaling.factor": None}), ["rope_scaling.factor"]),
    (_hf_config(**{"rope_scaling.truncate": True}), ["rope_scaling.truncate is True"]),
    (_hf_config(**{"rope_scaling.truncate": None}), ["rope_scaling.truncate is missing"]),
    (_hf_config(**{"rope_scaling.truncate": "false"}), ["truncate is 'false'", "JSON boolean"]),
    (_hf_config(**{"rope_scaling.attention_factor": 2.0}), ["attention_factor is 2.0", "1.34657"]),
    (_hf_config(**{"rope_scaling.attention_factor": "1.3"}), ["attention_factor is '1.3'"]),
    (_hf_config(transformers_5=True, **{"rope_parameters.factor": None}),
     ["missing key rope_parameters.factor"]),
    (_hf_config(transformers_5=True, **{"rope_parameters.beta_fast": 1.0}),
     ["rope_parameters.beta_fast=1.0", "rope_parameters.beta_slow"]),
    (_hf_config(**{"rope_scaling.mscale": 1.0}), ["rope_scaling.mscale is 1.0"]),
    (_hf_config(swiglu_alpha=3.0), ["swiglu_alpha is 3.0", "1.702"]),
    (_hf_config(architectures=3), ["architectures must be a list of names, got 3"]),
    (_hf_config(layer_types=2), ["layer_types must list", "got 2"]),
    (_hf_config(rope_scaling=None), ["missing key rope_scaling (or rope_parameters)"]),
    (_hf_config(hidden_size=48), ["hidden_size=48", "32"]),
    (_hf_config(num_attention_heads="4"), ["num_attention_heads"]),
    (_hf_config(layer_types=["full_attention"] * 2), ["layer_types"]),
    ({k: v for k, v in config_json.to_original_config(HPARAMS).items() if k != "rope_ntk_alpha"},
     ["rope_ntk_alpha"]),
    ({"hidden_size": 64}, ["neither an HF config"]),
    (_hf_config(**{"rope_scaling.beta_fast": 1.0}), ["rope_scaling.beta_fast=1.0",
                                                     "rope_scaling.beta_slow"]),
    (_hf_config(rms_norm_eps=float("nan")), ["rms_norm_eps must be a finite number > 0, got nan"]),
    (_hf_config(num_experts_per_tok=HPARAMS["num_experts"] + 1),
     [f"num_experts_per_tok={HPARAMS['num_experts'] + 1}", "num_local_experts"]),
], ids=["architecture", "rope_type", "quant_method", "missing", "missing_rope", "truncate",
        "truncate_missing", "truncate_string", "attention_factor", "attention_factor_string",
        "rope_parameters_missing", "rope_parameters_betas", "mscale", "swiglu_alpha",
        "architectures_type", "layer_types_type", "no_rope", "block", "type",
        "layer_types", "original_missing", "unknown_layout", "rope_betas", "nan", "top_k"])
def test_bad_config_is_named(tmp_path, config, fragments):
  path = tmp_path / "config.json"
  path.write_text(json.dumps(config))
  with raises_naming(str(path), *fragments):
    ckpt.read_config(path)


def test_bad_json_is_named(written, tmp_path):
  repo = shutil.copytree(written["original"], tmp_path / "original")
  (repo / "config.json").write_text('{"num_experts": 4,')
  with raises_naming(str(repo / "config.json"), "not valid JSON"):
    ckpt.read_hparams(repo)
  with raises_naming("config.json", "not valid JSON"):
    ckpt.iter_canonical(repo, progress=False)


# --- bad tensors ----------------------------------------------------------------------------------


def _drop(name):
  return lambda tensors: tensors.pop(name)


def _set(name, array):
  return lambda tensors: tensors.__setitem__(name, array)


@pytest.mark.parametrize("edit, fragments", [
    (_drop("block.1.mlp.gate.bias"), ["missing tensor block.1.mlp.gate.bias"]),
    (_set("block.0.attn.rotary.inv_freq", np.ones(8, np.float32)),
     ["unexpected tensor block.0.attn.rotary.inv_freq"]),
    (_set("block.0.attn.qkv.weight", np.ones((Q + 2 * KV, 32), np.float32)),
     ["block.0.attn.qkv.weight", "(128, 32)", "(128, 64)"]),
    (_set("block.1.mlp.mlp1_weight.blocks", np.ones((4, 128, 2, 16), np.float32)),
     ["block.1.mlp.mlp1_weight.blocks", "F32", "U8"]),
    (_set("block.0.attn.sinks", np.ones(4, np.int32)), ["block.0.attn.sinks", "I32"]),
], ids=["missing", "unexpected", "shape", "float_blocks", "int_dense"])
def test_bad_tensor_is_named(written, tmp_path, edit, fragments):
  repo = shutil.copytree(written["original"], tmp_path / "original")
  tensors = load_file(repo / "model.safetensors")
  edit(tensors)
  save_file(tensors, repo / "model.safetensors")
  with raises_naming(*fragments) as error:
    ckpt.iter_canonical(repo, progress=False)
  assert "\n" not in str(error.value)


def test_missing_hf_tensor_is_named(written, tmp_path):
  repo = shutil.copytree(written["hf"], tmp_path / "hf")
  index = json.loads((repo / "model.safetensors.index.json").read_text())
  name = "model.layers.1.self_attn.v_proj.bias"
  file = repo / index["weight_map"].pop(name)
  tensors = load_file(file)
  del tensors[name]
  save_file(tensors, file)
  (repo / "model.safetensors.index.json").write_text(json.dumps(index))
  with raises_naming("missing tensor " + name):
    ckpt.iter_canonical(repo, progress=False)
