"""load_model on both safetensors layouts and on packed orbax params; its errors."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mxfp4_jax
from configs import tiny
from mxfp4_jax.checkpoint import CheckpointError, iter_canonical, write_random_checkpoint
from mxfp4_jax.model import GptOssConfig
from mxfp4_jax.model.loading import (PACKED_FORMAT, PACKED_MARKER, checkpoint_config,
                                     from_canonical)

REPO = pathlib.Path(__file__).resolve().parents[1]
HPARAMS = GptOssConfig.from_dict(tiny.model_config()).hparams()
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 24)), jnp.int32)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  root = tmp_path_factory.mktemp("ckpt")
  write_random_checkpoint(root / "hf", HPARAMS, "hf", seed=3)
  write_random_checkpoint(root / "gpt-oss", HPARAMS, "original", seed=3, nested=True)
  return root


def test_both_layouts_load_to_the_same_model(checkpoints):
  hf = mxfp4_jax.load_model(checkpoints / "hf", dtype="float32", progress=False)
  original = mxfp4_jax.load_model(checkpoints / "gpt-oss", dtype="float32", progress=False)
  assert hf.cfg == original.cfg
  for layout in ("hf", "gpt-oss"):  # the same config, read without the weights
    assert checkpoint_config(checkpoints / layout, dtype="float32") == hf.cfg
  a, b = hf(TOKENS), original(TOKENS)
  assert a.shape == (2, 24, HPARAMS["vocab_size"]) and a.dtype == jnp.float32
  assert np.isfinite(np.asarray(a)).all()
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_convert_then_restore_packed(checkpoints, tmp_path):
  from mxfp4_jax.generate.tokenizer import load_tokenizer, tiny_tokenizer
  tiny_tokenizer().hf.save(str(checkpoints / "hf" / "tokenizer.json"))
  out = tmp_path / "packed"
  result = subprocess.run(
      [sys.executable, "-m", "experiments.convert_checkpoint",
       f"--config.checkpoint={checkpoints / 'hf'}", f"--config.output={out}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert (out / PACKED_MARKER).exists()
  assert load_tokenizer(out).encode("<|start|>user") == tiny_tokenizer().encode("<|start|>user")
  restored = mxfp4_jax.load_model(out, dtype="float32")
  direct = mxfp4_jax.load_model(checkpoints / "hf", dtype="float32", progress=False)
  np.testing.assert_array_equal(np.asarray(restored(TOKENS)), np.asarray(direct(TOKENS)))


def test_packed_params_keep_the_config(tmp_path, monkeypatch):
  from flax import nnx
  from mxfp4_jax.model import GptOss
  from mxfp4_jax.model.loading import save_packed
  cfg = GptOssConfig.from_dict(tiny.model_config()).replace(swiglu_alpha=1.5, swiglu_limit=5.0)
  monkeypatch.chdir(tmp_path)  # relative paths, which orbax itself refuses
  save_packed(GptOss(cfg, rngs=nnx.Rngs(0)), "packed")
  restored = mxfp4_jax.load_model("packed", dtype=cfg.dtype)
  assert restored.cfg == cfg
  runtime = dict(moe_backend="reference", attention_backend="xla", router_backend="xla")
  assert mxfp4_jax.load_model(tmp_path / "packed", dtype=cfg.dtype, **runtime).cfg == cfg.replace(
      **runtime)
  assert checkpoint_config("packed", dtype=cfg.dtype, **runtime) == cfg.replace(**runtime)


def test_load_model_takes_every_runtime_field():
  """Experiments hand a checkpoint their config's `GptOssConfig.RUNTIME` fields: each must be a
  keyword of load_model and of checkpoint_config, and every config field is a hyperparameter or
  one of them."""
  import dataclasses
  import inspect
  from mxfp4_jax.model.loading import load_model
  for function in (load_model, checkpoint_config):
    keywords = set(inspect.signature(function).parameters) - {"path", "progress"}
    assert keywords == set(GptOssConfig.RUNTIME), function.__name__
  fields = {f.name for f in dataclasses.fields(GptOssConfig)}
  assert fields == {*GptOssConfig.HPARAMS, *GptOssConfig.RUNTIME, "swiglu_alpha"}


def test_pallas_and_reference_moe_agree(checkpoints):
  """The whole tiny model with the Pallas kernel (interpret mode on CPU) against the jnp MoE, bf16."""
  kernel = mxfp4_jax.load_model(checkpoints / "hf", moe_backend="pallas",
                                moe_interpret=jax.default_backend() != "gpu",
                                progress=False)
  reference = mxfp4_jax.load_model(checkpoints / "hf", moe_backend="reference", progress=False)
  tokens = TOKENS[:1, :12]
  a, b = np.asarray(kernel(tokens), np.float64), np.asarray(reference(tokens), np.float64)
  assert np.linalg.norm(a - b) / np.linalg.norm(b) < 2e-2
  assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.9


def test_tensor_the_index_leaves_out_is_named(checkpoints, tmp_path):
  """A tensor still in its shard but gone from the HF index (a tensor gone from both:
  test_checkpoint.test_missing_hf_tensor_is_named)."""
  import shutil
  name = "model.layers.1.self_attn.sinks"
  broken = tmp_path / "broken"
  shutil.copytree(checkpoints / "hf", broken)
  index_file = broken / "model.safetensors.index.json"
  index = json.loads(index_file.read_text())
  shard = index["weight_map"].pop(name)
  index_file.write_text(json.dumps(index))
  with pytest.raises(CheckpointError, match=f"does not list tensor {name} \\(in {shard}\\)"):
    mxfp4_jax.load_model(broken, progress=False)


@pytest.mark.parametrize("dropped,message", [
    ("layers.1.down.bias", r"layers.1.down: has \['blocks', 'scales'\]"),
    ("layers.1.sinks", "first layers.1.attn.sinks$")])
def test_tensor_missing_from_the_stream_is_named(checkpoints, dropped, message):
  """from_canonical on a stream that lacks one tensor names it (or its expert projection)."""
  cfg = GptOssConfig.from_dict(tiny.model_config())
  tensors = ((name, a) for name, a in iter_canonical(checkpoints / "hf", progress=False)
             if name != dropped)
  with pytest.raises(CheckpointError, match=message):
    from_canonical(cfg, tensors)


@pytest.mark.parametrize("change,message", [
    (("layers.1.down.scales", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, 255, a)),
     "layers.1.down: pack: scales holds 0xFF"),
    (("layers.0.gate_up.blocks", lambda a: a[:, :64]), r"layers.0.gate_up: blocks \(4, 64, 2, 16\)"),
    (("layers.0.rotary.inv_freq", None), "layers.0.rotary.inv_freq: not a parameter"),
    (("layers.9.down.bias", None), r"layers.9.down.bias: not a parameter of this GPT-OSS \(2 "),
    (("layers.-1.sinks", None), r"layers.-1.sinks: not a parameter"),
    (("layers.x.down.bias", None), r"layers.x.down.bias: not a parameter"),
    (("layers.0.down.weight", None), r"layers.0.down.weight: not a parameter"),
    (("layers.1.down.blocks", lambda a: a.astype(np.float32)),
     "layers.1.down: pack: blocks must be uint8"),
])
def test_a_bad_tensor_in_the_stream_is_named(checkpoints, change, message):
  """A scale byte the format has no value for (0xFF, E8M0's NaN), expert tensors whose shapes
  the config does not imply, and a name the model has no parameter for: one error each,
  naming the tensor."""
  cfg = GptOssConfig.from_dict(tiny.model_config())
  name, edit = change
  stream = list(iter_canonical(checkpoints / "hf", progress=False))
  if edit is None:
    stream.insert(1, (name, np.zeros(3, np.float32)))
  else:
    stream = [(n, edit(a) if n == name else a) for n, a in stream]
  if name.endswith("gate_up.blocks"):  # the scales and bias of the same (wrong) experts
    stream = [(n, a[:, :64] if n in ("layers.0.gate_up.scales", "layers.0.gate_up.bias") else a)
              for n, a in stream]
  with pytest.raises(CheckpointError, match=message):
    from_canonical(cfg, iter(stream))


def test_load_model_names_a_path_that_is_none():
  with pytest.raises(TypeError, match="path must be a checkpoint directory .*, got None"):
    mxfp4_jax.load_model(None)


def test_bad_packed_marker(tmp_path):
  for text in (b"{not json", b'{"format": "\xff"}'):  # the second: not UTF-8
    (tmp_path / PACKED_MARKER).write_bytes(text)
    with pytest.raises(CheckpointError, match="not valid JSON"):
      mxfp4_jax.load_model(tmp_path)
  (tmp_path / PACKED_MARKER).write_text(json.dumps({"format": 99}))
  with pytest.raises(CheckpointError, match="format 99"):
    mxfp4_jax.load_model(tmp_path)
  (tmp_path / PACKED_MARKER).write_text(json.dumps([PACKED_FORMAT]))
  with pytest.raises(CheckpointError, match="format 'list'"):
    mxfp4_jax.load_model(tmp_path)
  (tmp_path / PACKED_MARKER).write_text(json.dumps({"format": PACKED_FORMAT}))
  with pytest.raises(CheckpointError, match="no 'hparams' object"):
    mxfp4_jax.load_model(tmp_path)
  (tmp_path / PACKED_MARKER).write_text(json.dumps({"format": PACKED_FORMAT,
                                                    "hparams": dict(HPARAMS, hidden_size=0)}))
  with pytest.raises(CheckpointError, match="hparams: hidden_size must be a finite number > 0"):
    mxfp4_jax.load_model(tmp_path)
  (tmp_path / PACKED_MARKER).write_text(json.dumps({"format": PACKED_FORMAT, "hparams": HPARAMS}))
  with pytest.raises(CheckpointError, match="params: missing"):
    mxfp4_jax.load_model(tmp_path)


@pytest.mark.parametrize("change, message", [
    (dict(vocab_size=1024), r"params: embedding is \(512, 64\) on disk, the hparams in "
                            r".*mxfp4_jax.json make it \(1024, 64\)"),
    (dict(num_layers=1), r"params: layers.1.attn.out_bias is \(64,\) on disk, .* make it no "
                         r"parameter")])
def test_packed_params_that_differ_from_the_marker_are_named(tmp_path, change, message):
  from flax import nnx
  from mxfp4_jax.model import GptOss
  from mxfp4_jax.model.loading import save_packed
  cfg = GptOssConfig.from_dict(tiny.model_config())
  path = save_packed(GptOss(cfg, rngs=nnx.Rngs(0)), tmp_path / "packed")
  meta = json.loads((path / PACKED_MARKER).read_text())
  meta["hparams"].update(change)
  (path / PACKED_MARKER).write_text(json.dumps(meta))
  with pytest.raises(CheckpointError, match=message):
    mxfp4_jax.load_model(path)
  with pytest.raises(ValueError, match="dtype must be 'bfloat16' or 'float32', got 'bf16'"):
    mxfp4_jax.load_model(path, dtype="bf16")


@pytest.mark.parametrize("damaged, message", [
    ("ocdbt.process_0/d", "unreadable packed parameters"),  # the arrays' data
    ("d", "no parameters on disk (orbax's metadata"),  # the arrays' metadata
])
def test_damaged_packed_params_are_one_line_errors(tmp_path, damaged, message):
  """Data files cut short: not pages of TensorStore detail, one line naming the directory. (In
  a subprocess: orbax's reads, cut off, report their own failures to stderr as they are
  collected.)"""
  from flax import nnx
  from mxfp4_jax.model import GptOss
  from mxfp4_jax.model.loading import save_packed
  path = save_packed(GptOss(GptOssConfig.from_dict(tiny.model_config()), rngs=nnx.Rngs(0)),
                     tmp_path / "packed")
  files = [f for f in (path / "params" / damaged).iterdir() if f.is_file()]
  assert files
  for f in files:
    f.write_bytes(f.read_bytes()[:10])
  script = ("import sys, mxfp4_jax\ntry:\n  mxfp4_jax.load_model(sys.argv[1])\n"
            "except mxfp4_jax.checkpoint.CheckpointError as e:\n  print(e)")
  result = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  [line] = result.stdout.splitlines() or [result.stderr[-2000:]]
  assert line.startswith(f"{path / 'params'}: {message}"), line


def test_not_a_checkpoint(tmp_path):
  with pytest.raises(CheckpointError):
    mxfp4_jax.load_model(tmp_path)


@pytest.mark.parametrize("name", ["gpt_oss_20b", "gpt_oss_120b", "tiny"])
@pytest.mark.parametrize("layout", ["hf", "original"])
def test_config_json_gives_the_same_model_config(tmp_path, name, layout):
  """configs/<name>.py -> config.json as the real checkpoints write it -> the same GptOssConfig."""
  import importlib
  from mxfp4_jax.checkpoint.config_json import read_config, to_hf_config, to_original_config

  cfg = GptOssConfig.from_dict(importlib.import_module(f"configs.{name}").get_config().model)
  write = to_hf_config if layout == "hf" else to_original_config
  config = write(cfg.hparams())
  (tmp_path / "config.json").write_text(json.dumps(config))
  assert cfg.context_length == 131_072  # GPT-OSS's 4,096 positions stretched 32 times by YaRN
  if layout == "hf":
    assert config["max_position_embeddings"] == cfg.context_length
  assert GptOssConfig.from_dict(read_config(tmp_path / "config.json")) == cfg
