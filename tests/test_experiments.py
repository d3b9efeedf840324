"""The experiments run end to end through the config system, as a user would run them."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from mxfp4_jax import benchmarking
from mxfp4_jax.kernels import tuning

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                        timeout=300)


def test_mxfp4_demo_with_overrides_writes_histogram(tmp_path):
  histogram = tmp_path / "error.png"
  result = _run("experiments.mxfp4_demo", "--config=configs/mxfp4_demo.py", "--config.rows=32",
                "--config.cols=64", "--config.distribution=student_t",
                f"--config.histogram={histogram}")
  assert result.returncode == 0, result.stderr
  assert "MXFP4 round trip of a 32x64 matrix (student_t random)" in result.stdout
  assert "bf16 4,096 -> MXFP4 1,088" in result.stdout  # 32*64*2 bytes -> 32*64/2 + 32*2 scales
  assert histogram.stat().st_size > 0


def test_mxfp4_demo_reads_a_given_matrix(tmp_path):
  import numpy as np
  path = tmp_path / "w.npy"
  np.save(path, np.linspace(-3, 3, 16 * 96, dtype=np.float32).reshape(16, 96))
  result = _run("experiments.mxfp4_demo", f"--config.input={path}")
  assert result.returncode == 0, result.stderr
  assert f"16x96 matrix (from {path})" in result.stdout


@pytest.mark.parametrize("matrix, message", [
    ("npz", "--config.input must be one .npy array, got NpzFile"),
    ("text", "--config.input: {path} is not a .npy file"),
    ("nan", "--config.input holds NaN, infinity or values beyond float32's range"),
    ("huge", "--config.input holds NaN, infinity or values beyond float32's range"),
    ("complex", "--config.input must hold real numbers, got complex128"),
    ("empty", "--config.input must hold a non-empty 2-D matrix"),
])
def test_mxfp4_demo_names_a_matrix_it_cannot_quantize(tmp_path, matrix, message):
  import numpy as np
  w = np.ones((0 if matrix == "empty" else 2, 32), complex if matrix == "complex" else float)
  if matrix in ("nan", "huge"):
    w[0, 3] = np.nan if matrix == "nan" else 1e39
  path = tmp_path / ("w.npz" if matrix == "npz" else "w.npy")
  if matrix == "npz":
    np.savez(path, w=w)
  elif matrix == "text":
    path.write_text("1 2 3\n")
  else:
    np.save(path, w)
  result = _run("experiments.mxfp4_demo", f"--config.input={path}")
  assert result.returncode != 0
  message = message.format(path=path)
  assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_mxfp4_demo_round_trips_zeros_exactly(tmp_path):
  import numpy as np
  np.save(tmp_path / "w.npy", np.zeros((2, 32), np.float32))
  result = _run("experiments.mxfp4_demo", f"--config.input={tmp_path / 'w.npy'}")
  assert result.returncode == 0, result.stderr
  assert "relative error (Frobenius) 0.0000" in result.stdout


def test_mxfp4_demo_rejects_a_bad_flag_in_one_line():
  result = _run("experiments.mxfp4_demo", "--config.cols=33")
  assert result.returncode != 0
  assert "--config.cols=33 must be a multiple of 32" in result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (("bench_kernel", "--config.rows=-4"), "--config.rows must be >= 1, got -4"),
    (("kernel_sass", "--config.shape=20b_gateup"), "--config.shape: '20b_gateup' is not a shape"),
    (("tune_kernel", "--config.num_warps=4,3"),
     "--config.num_warps: KernelConfig.num_warps must be a power of two, got 3"),
    (("tune_kernel", "--config.rows=4"), "tune_kernel needs a GPU"),
    (("bench_attention", "--config.tilings=64x64"), "--config.tilings: '64x64' is neither"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.kernel_options=prefetch=x"),
     "--config.bench.kernel_options: 'prefetch=x'"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.kernel_options=prefetch=1",
      "--config.model.moe_backend=reference"),
     "--config.bench.kernel_options: the experts run the 'reference' backend here"),
    (("generate", "--top_p=2"), "--top_p: top_p must be a number in (0, 1], got 2.0"),
    (("generate", "--config.max_len=131073"),
     "--config.max_len: 131,073 positions are over the model's context of 131,072 tokens"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.prefill_lengths=131072"),
     "--config.bench.prefill_lengths: 131,073 positions are over the model's context"),
    (("generate", "--top_p=0.9"), "with --temperature=0 (greedy) they do nothing"),
    (("generate", "--temperature=1", "--seed=-1"), "--seed must be an int in [0, 2**32), got -1"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.prefill_tokens=0"),
     "--config.bench.prefill_tokens must be >= 1, got 0"),
    (("generate", "--config.prefill_tokens=0"), "--config.prefill_tokens must be >= 1, got 0"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.seed=-1"),
     "--config.seed must be an int in [0, 2**32), got -1"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.batch_sizes=",
      "--config.bench.prefill_lengths="), "are both empty: nothing to measure"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.hbm_bytes_per_s=-1"),
     "--config.bench.hbm_bytes_per_s must be a finite rate > 0 (or 0: this device's), got -1.0"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.hbm_bytes_per_s=inf"),
     "--config.bench.hbm_bytes_per_s must be a finite rate > 0"),
    (("bench_attention", "--config.bf16_flops_per_s=-1"),
     "--config.bf16_flops_per_s must be a finite rate > 0"),
    (("bench_attention", "--config.tilings=24x64x4x2"),
     "--config.tilings: 24x64x4x2: block_q must be a power of two >= 16"),
    (("bench_attention", "--config.tilings=64x64x3x2"),
     "--config.tilings: 64x64x3x2: num_warps must be a power of two, got 3"),
    (("bench_attention", "--config.tilings="), "--config.tilings is empty"),
    (("bench_attention", "--config.decode_rotated_bytes=nan"),
     "--config.decode_rotated_bytes must be a byte count from 0 to 1e+11, got nan"),
    (("bench_attention", "--config.decode_rotated_bytes=1e30"),
     "--config.decode_rotated_bytes must be a byte count from 0 to 1e+11, got 1e+30"),
    (("bench_attention", "--config.seed=-1"), "--config.seed must be an int in [0, 2**32)"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.output_dir=README.md/run"),
     "--config.bench.output_dir: README.md exists and is not a directory"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.profile_dir=README.md"),
     "--config.bench.profile_dir: README.md exists and is not a directory"),
    (("bench_attention", "--config.output_dir=README.md/a/b"),
     "--config.output_dir: README.md exists and is not a directory"),
    (("generate", "--config.model.moe_backend=pallas"),
     "--config.model.moe_backend='pallas' and --config.model.router_backend='auto' (here "
     "'top_k') compile for a GPU only; on cpu set --config.model.moe_interpret=True"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.model.router_backend=top_k"),
     "--config.model.router_backend='top_k' compiles for a GPU only"),
    (("generate", "--profile_dir=README.md/trace"),
     "--profile_dir: README.md exists and is not a directory"),
    (("mxfp4_demo", "--config.histogram=README.md/h.png"),
     "--config.histogram: README.md exists and is not a directory"),
    (("bench_kernel", "--config.mode=eager_smoke", "--config.seed=-1"),
     "--config.seed must be an int in [0, 2**32)"),
    (("bench_attention", "--config.windows=-8"), "--config.windows must be >= 0, got -8"),
    (("bench_attention", "--config.windows=abc"),
     "--config.windows: 'abc' is not a comma-separated list of integers"),
    (("bench_attention", "--config.head_dim=24"), "--config.head_dim must be a power of two"),
    (("bench_attention", "--config.kv_heads=-1"), "--config.kv_heads must be >= 1, got -1"),
    (("bench_attention", "--config.lengths="), "are both empty: nothing to measure"),
    (("kernel_fingerprint", "--config.shapes=20b_down,3x200x48"),
     "--config.shapes: '3x200x48' needs E >= 1, K a multiple of 32"),
    (("kernel_fingerprint", "--config.variant_shapes=3x64x95_swiglu"),
     "--config.variant_shapes: '3x64x95_swiglu' needs"),
    (("kernel_fingerprint", "--config.variant_prefetch=-1"),
     "--config.variant_prefetch must be >= 0, got -1"),
    (("kernel_fingerprint", "--config.shapes=", "--config.variant_shapes="),
     "are both empty: nothing to fingerprint"),
    (("mxfp4_demo", "--config.seed=-1"), "--config.seed must be an int in [0, 2**32), got -1"),
    (("mxfp4_demo", "--config.histogram=x.txt"),
     "--config.histogram must end in one of matplotlib's formats ("),
    (("mxfp4_demo", "--config.input=absent.npy"), "--config.input: [Errno 2]"),
    (("mxfp4_demo", "--config.rows=100000000", "--config.cols=100000000"),
     "--config.rows x --config.cols = 10,000,000,000,000,000 values, over the demo's"),
    (("convert_checkpoint", "--config.checkpoint=x", "--config.output=pyproject.toml"),
     "--config.output: pyproject.toml exists and is not a directory"),
    (("convert_checkpoint", "--config.checkpoint=x", "--config.output=pyproject.toml/packed"),
     "--config.output: pyproject.toml exists and is not a directory"),
    (("convert_checkpoint", "--config.checkpoint=tests/golden/tiny_hf",
      "--config.output=tests/golden/tiny_hf/"), "is the checkpoint's own directory"),
    (("bench_kernel", "--config.calls=(8,8)"), "--config.calls must be two chain lengths"),
    (("tune_kernel", "--config.repeats=0"), "--config.repeats must be >= 1, got 0"),
    (("load_ceiling", "--config.weight_copies=1"), "--config.weight_copies must be an int >= 2"),
    (("bench_kernel", "--config.top_k=0"), "--config.top_k must be an int from 1 to 32 (the "
     "experts of 20b_gate_up), got 0"),
    (("tune_kernel", "--config.shapes=120b_gate_up,20b_down", "--config.top_k=33"),
     "--config.top_k must be an int from 1 to 32 (the experts of 20b_down), got 33"),
    (("bench_kernel", "--config.baselines=ragged-dot"), "--config.baselines: 'ragged-dot' is not"),
    (("tune_kernel", "--config.confirm_rounds=-1"), "--config.confirm_rounds must be an int >= 0"),
    (("bench_kernel", "--config.max_rel_err=0"), "--config.max_rel_err must be > 0, got 0.0"),
    (("tune_kernel", "--config.max_weight_bytes=0"), "--config.max_weight_bytes must be > 0"),
    (("bench_kernel", "--config.row_experts=yes"),
     "--config.row_experts must be one of model, always, never, got 'yes'"),
    (("generate", "--stop_tokens=²"), "--stop_tokens: '²' is neither a token id"),
    (("generate", "--profile_dir=/tmp/unused", "--config.profile_chunk=-1"),
     "--config.profile_chunk must be a decode chunk's index >= 0, got -1"),
    (("generate", "--config.gpu_memory_fraction=1.5"),
     "--config.gpu_memory_fraction must be in (0, 1], got 1.5"),
    (("bench_e2e", "--config=configs/tiny.py", "--config.bench.gpu_memory_fraction=-0.5"),
     "--config.bench.gpu_memory_fraction must be in (0, 1], got -0.5"),
    (("generate", "--config.model.vocab_size=100"),
     "--config.model.vocab_size=100: a vocabulary of 100 tokens is smaller than the tokenizer's"),
    (("mxfp4_demo", "--config.col=64"),
     "--config: no such field: 'col' Did you mean \"cols\" instead of \"col\"?"),
    (("generate", "--config.model.hiden_size=64"), "--config: no such field: 'hiden_size'"),
    (("generate", "--config=configs/generate.py:tiny", "--config.model.hiden_size=64"),
     "--config: no such field: 'hiden_size'"),
    (("generate", "--config=configs/absent.py"),
     "--config: cannot load: Failed loading config file"),
    (("generate", "--config=configs/generate.py:bench_kernel"),  # a config, not a model's
     "--config: cannot load: ValueError: --config=configs/generate.py:bench_kernel: no model "
     "config in configs/bench_kernel.py"),
    (("bench_e2e", "--config=configs/tiny.py:x"),
     "--config: cannot load: TypeError: get_config() takes 0 positional arguments"),
    (("generate", "--config=README.md"), "--config: cannot load: SyntaxError: "),
    (("generate", "--config=configs/"), "--config: cannot load: configs/: Is a directory"),
    (("generate", "--config=experiments/__init__.py"),
     "--config: cannot load: the file defines no get_config()"),
    (("generate", "--checkpoint=tests/golden/tiny_hf", "--config.model.num_experts=2"),
     "--config.model.num_experts: --checkpoint brings the model's hyperparameters; only dtype, "),
    (("bench_e2e", "--config=configs/tiny.py", "--config.checkpoint=tests/golden/tiny_hf",
      "--config.model.num_layers=1"),
     "--config.model.num_layers: --config.checkpoint brings the model's hyperparameters"),
    (("tune_kernel", "--config.shapes=20b_down", "--config.rows=4", "--config.block_m=128"),
     "--config: nothing to sweep at 20b_down P=4: every block_m is over 16 there"),
    (("generate", "--config=configs/tiny.py"),
     "--config: no field chunk, decode_compiler_options, gpu_memory_fraction, max_len, "
     "prefill_tokens, profile_chunk in that config"),
    (("generate", "--config.decode_compiler_options=CONCURRENT"),
     "--config.decode_compiler_options: 'CONCURRENT' is not NAME=VALUE"),
    (("generate", "--config.decode_compiler_options=xla_no_such_option=1"),
     "--config.decode_compiler_options: INVALID_ARGUMENT: No such compile option: "
     "'xla_no_such_option'"),
    (("bench_e2e", "--config=configs/tiny.py",
      "--config.bench.decode_compiler_options=xla_gpu_command_buffer_scheduling_mode=SOMETIMES"),
     "--config.bench.decode_compiler_options: INVALID_ARGUMENT: While setting option "
     "xla_gpu_command_buffer_scheduling_mode, 'SOMETIMES' is not a valid enum value"),
    (("ceilings", "--config.array_bytes=0"), "--config.array_bytes must be at least 2**20, got 0"),
    (("bench_e2e",), "--config: 13.8 GB of weights: timing the real shapes is for a GPU only"),
    (("kernel_fingerprint", "--config.compare=absent"),
     "--config.compare: no absent/fingerprints.json"),
])
def test_a_bad_flag_is_one_line_naming_it_before_any_work(args, message):
  if ("needs a GPU" in message or "for a GPU only" in message) and jax.default_backend() == "gpu":
    pytest.skip("on a GPU it runs")
  result = _run(f"experiments.{args[0]}", *args[1:])
  assert result.returncode != 0
  assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.slow
def test_bench_kernel_eager_smoke_runs_the_kernel():
  result = _run("experiments.bench_kernel", "--config.mode=eager_smoke")
  assert result.returncode == 0, result.stderr
  line = next(l for l in result.stdout.splitlines() if l.startswith("eager smoke"))
  rel_err = float(line.split("rel err ")[1].split(",")[0])
  assert rel_err < 1e-2 and "tail rows zero: True" in line


def test_bench_kernel_baseline_out_of_memory_is_recorded_not_fatal(monkeypatch):
  from experiments import bench_kernel

  def out_of_memory(*args, **kwargs):
    raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 22.52GiB")
  monkeypatch.setattr(bench_kernel.benchmarking, "time_per_call", out_of_memory)
  row = dict(shape="120b_gate_up", rows=16384, active_experts=128, rel_err=1e-3, mxfp4_ms=1.0,
             mxfp4_tb_per_s=0.1, mxfp4_tflop_per_s=400.0, mxfp4_hbm_roofline=0.1,
             mxfp4_tc_roofline=0.5)
  config = ml_collections.ConfigDict(dict(calls=(4, 20), repeats=3))
  assert bench_kernel._baseline_seconds(row, "ragged_dot", None, [], config) is None
  assert row["ragged_dot_error"] == "out of device memory"
  assert "ragged_dot out of device memory" in bench_kernel._format_row(row)

  def other_failure(*args, **kwargs):
    raise jax.errors.JaxRuntimeError("INTERNAL: something else")
  monkeypatch.setattr(bench_kernel.benchmarking, "time_per_call", other_failure)
  with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
    bench_kernel._baseline_seconds({}, "dense", None, [], config)


@pytest.mark.parametrize("by_row, activation", [(False, None), (False, "swiglu"),
                                                (True, None)])
def test_reference_in_chunks_is_the_whole_reference(by_row, activation):
  import jax.numpy as jnp
  from experiments.kernel_problems import reference_in_chunks
  from mxfp4_jax.kernels import grouped_matmul
  from mxfp4_jax.kernels.reference import expert_of_row
  from mxfp4_jax.mxfp4.layout import random_packed

  key = jax.random.PRNGKey(3)
  w = random_packed(key, 3, 64, 32, swiglu_halves=activation == "swiglu")
  x = jax.random.normal(jax.random.fold_in(key, 1), (20, 64), jnp.bfloat16)
  row_weights = jax.random.uniform(jax.random.fold_in(key, 2), (20,))
  # By group: rows 17.. past the groups (zeros); by row, every row has an expert.
  group_sizes = jnp.array([6, 0, 14 if by_row else 11], jnp.int32)
  experts = expert_of_row(group_sizes, 20) if by_row else None
  groups = None if by_row else group_sizes
  whole = grouped_matmul(x.astype(jnp.float32), w, groups, row_weights, row_experts=experts,
                         activation=activation, backend="reference")
  for chunk in (4, 9, 20, 64):  # inside the first group, across a group's end, one chunk
    chunked = reference_in_chunks(x, w, experts if by_row else groups, row_weights, activation,
                                  by_row=by_row, chunk=chunk)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=1e-6, atol=1e-6)
  empty = reference_in_chunks(x[:0], w, experts[:0] if by_row else jnp.zeros(3, jnp.int32),
                              row_weights[:0], activation, by_row=by_row)
  assert empty.shape == (0, whole.shape[1])


def test_ceilings_given_or_of_the_device(capsys):
  from experiments import common
  assert common.ceilings(1.0, 2.0) == (1.0, 2.0)
  h100 = common.DEVICE_CEILINGS["NVIDIA H100 80GB HBM3"]
  assert common.ceilings(0.0, 2.0) == (h100[0], 2.0)  # cpu: not listed
  out = capsys.readouterr().out
  assert "none known for 'cpu'; using the H100's (pass --config.hbm_bytes_per_s," in out
  assert "bf16_flops_per_s" not in out  # given: not asked for
  common.ceilings(bf16_flops_per_s=2.0, used=("bf16_flops_per_s",))  # bench_attention's case
  assert capsys.readouterr().out == ""


def test_ceilings_names_a_size_too_small_to_time(monkeypatch):
  """Whether a size times at all depends on the machine's noise: the refusal is faked here."""
  from absl import app
  from experiments import ceilings

  def unresolved(*args, **kwargs):
    raise RuntimeError("time_per_call: no slope resolved between 1 and 512 calls")
  monkeypatch.setattr(ceilings.benchmarking, "time_per_call", unresolved)
  with pytest.raises(app.UsageError, match=r"^--config.matmul_size=1: too small to time here "
                                           r"\(time_per_call: no slope resolved"):
    ceilings._seconds("--config.matmul_size", 1, lambda a: a, [(1,)], perturb=0)


def test_ceilings_runs_and_writes_both(tmp_path):
  result = _run("experiments.ceilings", "--config.array_bytes=2e6", "--config.matmul_size=128",
                f"--config.output_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  written = json.loads((tmp_path / "results.json").read_text())
  assert min(written["hbm_bytes_per_s"], written["hbm_copy_bytes_per_s"],
             written["bf16_flops_per_s"]) > 0
  assert "TB/s" in result.stdout and "TF/s" in result.stdout


@pytest.mark.parametrize("option, message", [("decode=fast", "decode must be one of"),
                                             ("block_q=16", "is not NAME=VALUE"),
                                             ("k_splits=two", "invalid literal"),
                                             ("accumulate_in_mma=2", "must be 0 or 1, got '2'")])
def test_bench_kernel_rejects_a_bad_kernel_option_in_one_line(option, message):
  result = _run("experiments.bench_kernel", f"--config.kernel_options={option}",
                "--config.rows=4", "--config.shapes=20b_down", "--config.baselines=")
  assert result.returncode != 0
  assert message in result.stderr and "Traceback" not in result.stderr


def test_bench_attention_small_shapes_agree_with_xla(tmp_path):
  result = _run("experiments.bench_attention", "--config.lengths=40", "--config.kv_heads=2",
                "--config.group=2", "--config.head_dim=16", "--config.tilings=xla,16x16x4x2",
                "--config.windows=0,8", f"--config.output_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  rows = json.loads((tmp_path / "results.json").read_text())["results"]
  assert [(r["window"], r["tiling"]) for r in rows] == [(0, "xla"), (0, "16x16x4x2"), (8, "xla"),
                                                        (8, "16x16x4x2")]
  assert all(r["rel_err_vs_xla"] < 1e-2 and r["ms"] > 0 for r in rows)


def test_bench_attention_decode_mode_agrees_with_xla(tmp_path):
  """The decode kernel timed by split: one share (normalised in the kernel) and several."""
  result = _run("experiments.bench_attention", "--config.lengths=", "--config.decode_batches=1",
                "--config.decode_contexts=40", "--config.decode_programs=1,8",
                "--config.kv_heads=2", "--config.group=2", "--config.head_dim=16",
                "--config.windows=0,8", "--config.calls=1,2", "--config.decode_rotated_bytes=0",
                f"--config.output_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  rows = json.loads((tmp_path / "results.json").read_text())["results"]
  assert [(r["window"], r["num_programs"]) for r in rows] == [(0, 1), (0, 8), (8, 1), (8, 8)]
  assert all(r["rel_err_vs_xla"] < 1e-2 and r["ms"] > 0 for r in rows)


def test_generate_on_the_embedded_default_writes_a_trace(tmp_path):
  trace = tmp_path / "trace"
  result = _run("experiments.generate", "--max_new_tokens=12", "--prompt=Hi", "--prompt=Bye",
                "--config.chunk=4", f"--profile_dir={trace}", "--show_reasoning")
  assert result.returncode == 0, result.stderr
  assert "RANDOM WEIGHTS (2 layers, 4 experts, seed 0)" in result.stdout
  summary = next(l for l in result.stdout.splitlines() if l.startswith("summary:"))
  for field in ("load", "compile", "time to first token", "prefill", "decode",
                "peak device memory"):
    assert field in summary
  assert "batch 2" in summary
  assert list(trace.rglob("*.xplane.pb")) and list(trace.rglob("perfetto_trace.json.gz"))


def test_generate_rejects_an_overlong_prompt_before_work():
  result = _run("experiments.generate", "--config.max_len=32", "--max_new_tokens=8")
  assert result.returncode != 0
  assert "--config.max_len: prompt of" in result.stderr and "Traceback" not in result.stderr
  assert "exceeds max_len=32 (or lower --max_new_tokens)" in result.stderr
  assert "summary:" not in result.stdout


def test_generate_writes_the_current_date_into_the_system_message():
  """--current_date adds a line to the system message: the prompt grows."""
  lengths = []
  for date in ([], ["--current_date=2025-08-05"]):
    result = _run("experiments.generate", "--config.max_len=32", *date)
    lengths.append(int(re.search(r"prompt of (\d+) tokens", result.stderr)[1]))
  assert lengths[1] > lengths[0]


def test_generate_from_a_checkpoint_with_config_model_runtime_fields(tmp_path):
  from configs import tiny
  from mxfp4_jax.checkpoint import write_random_checkpoint
  from mxfp4_jax.generate.tokenizer import tiny_tokenizer
  from mxfp4_jax.model import GptOssConfig
  hparams = GptOssConfig.from_dict(tiny.model_config()).hparams()
  write_random_checkpoint(tmp_path, hparams, "hf", seed=1)
  tiny_tokenizer().hf.save(str(tmp_path / "tokenizer.json"))
  result = _run("experiments.generate", f"--checkpoint={tmp_path}", "--max_new_tokens=4",
                "--config.model.dtype=float32", "--config.model.attention_backend=xla")
  assert result.returncode == 0, result.stderr
  assert f"checkpoint {tmp_path}; float32, experts reference, attention xla" in result.stdout
  assert "summary:" in result.stdout

  missing = _run("experiments.generate", f"--checkpoint={tmp_path / 'absent'}")
  assert missing.returncode != 0 and "Traceback" not in missing.stderr
  assert "--checkpoint" in missing.stderr


def test_generate_checks_max_len_against_a_checkpoints_context_before_loading_it(tmp_path):
  """The context comes from the checkpoint's config (a quarter of the configured model's here);
  with the weights gone, reaching the context error shows that no weight was read first."""
  from configs import tiny
  from mxfp4_jax.checkpoint import write_random_checkpoint
  from mxfp4_jax.generate.tokenizer import tiny_tokenizer
  from mxfp4_jax.model import GptOssConfig
  hparams = dict(GptOssConfig.from_dict(tiny.model_config()).hparams(), rope_original_context=1024)
  write_random_checkpoint(tmp_path, hparams, "hf", seed=1)
  tiny_tokenizer().hf.save(str(tmp_path / "tokenizer.json"))
  for weights in tmp_path.glob("*.safetensors"):
    weights.unlink()
  result = _run("experiments.generate", f"--checkpoint={tmp_path}", "--config.max_len=32769")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert ("--config.max_len: 32,769 positions are over the model's context of 32,768 tokens"
          in result.stderr)


def test_generate_names_a_checkpoint_whose_tokenizer_does_not_fit(tmp_path):
  from configs import tiny
  from mxfp4_jax.checkpoint import write_random_checkpoint
  from mxfp4_jax.generate.tokenizer import tiny_tokenizer
  from mxfp4_jax.model import GptOssConfig
  hparams = dict(GptOssConfig.from_dict(tiny.model_config()).hparams(), vocab_size=256)
  write_random_checkpoint(tmp_path, hparams, "hf", seed=1)
  tiny_tokenizer().hf.save(str(tmp_path / "tokenizer.json"))  # 512 ids
  small = _run("experiments.generate", f"--checkpoint={tmp_path}", "--max_new_tokens=2")
  assert small.returncode != 0 and "Traceback" not in small.stderr
  assert ("--checkpoint: its model: a vocabulary of 256 tokens is smaller than the tokenizer's "
          "512") in small.stderr
  (tmp_path / "tokenizer.json").write_text("garbage")
  garbled = _run("experiments.generate", f"--checkpoint={tmp_path}")
  assert garbled.returncode != 0 and "Traceback" not in garbled.stderr
  assert f"--checkpoint: {tmp_path / 'tokenizer.json'}: not a readable tokenizer.json" in (
      garbled.stderr)


def test_generate_names_a_bad_stop_token_and_a_chunk_it_never_traced(tmp_path):
  bad = _run("experiments.generate", "--stop_tokens=<|end|>,nope")
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
  assert "--stop_tokens: 'nope' is neither a token id" in bad.stderr
  short = _run("experiments.generate", "--max_new_tokens=3", "--config.chunk=4",
               f"--profile_dir={tmp_path / 'trace'}")
  assert short.returncode == 0, short.stderr
  assert "no trace: generation ended before decode chunk 1" in short.stdout
  assert not (tmp_path / "trace").exists()


def test_bench_e2e_on_the_tiny_model(tmp_path):
  result = _run("experiments.bench_e2e", "--config=configs/tiny.py",
                "--config.bench.batch_sizes=1,2", "--config.bench.prefill_lengths=16",
                f"--config.bench.output_dir={tmp_path}",
                f"--config.bench.profile_dir={tmp_path}/trace")
  assert result.returncode == 0, result.stderr
  lines = [l for l in result.stdout.splitlines() if "tok/s" in l]
  assert [l.split()[0] for l in lines] == ["decode", "decode", "prefill"]
  assert all("lower middle of 2" in l for l in lines)  # of an even count
  assert all(("first token" in l) == (l.split()[0] == "decode") for l in lines)  # its prefill
  assert (tmp_path / "results.json").exists() and (tmp_path / "decode.png").exists()
  for case in ("decode_batch1", "decode_batch2", "prefill16"):  # one traced run of each
    assert list((tmp_path / "trace" / case).rglob("perfetto_trace.json.gz")), case
  results = json.loads((tmp_path / "results.json").read_text())
  assert 0 < results["weight_bytes"] < 10 * 2**20  # the tiny model: well under 10 MiB
  for row in results["results"]:  # the reported figure is one of the runs, their median
    runs = sorted(row["runs_tokens_per_s"])
    assert len(runs) == 2 and row["tokens_per_s"] == runs[0]
  for row in results["results"][:2]:  # a step makes one token a row of the batch
    assert row["step_ms"] == pytest.approx(1e3 * row["batch"] / row["tokens_per_s"])
    assert row["fraction_of_roofline"] == pytest.approx(
        row["tokens_per_s"] / row["roofline_tokens_per_s"])


def _tiny_interpreted_model():
  from flax import nnx
  from configs import tiny
  from mxfp4_jax.model import GptOss, GptOssConfig
  config = tiny.get_config()
  config.model.update(moe_backend="pallas", moe_interpret=True)
  return GptOss(GptOssConfig.from_dict(config.model), rngs=nnx.Rngs(0)), config.bench


def test_bench_e2e_prefill_only(tmp_path):
  result = _run("experiments.bench_e2e", "--config=configs/tiny.py", "--config.bench.batch_sizes=",
                "--config.bench.prefill_lengths=16", f"--config.bench.output_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert [l.split()[0] for l in result.stdout.splitlines() if "tok/s" in l] == ["prefill"]
  assert (tmp_path / "results.json").exists() and not (tmp_path / "decode.png").exists()


def test_bench_e2e_reports_a_case_out_of_memory_and_goes_on(monkeypatch, capsys):
  """A batch the device has no memory for is a row saying so; the other cases still run, and any
  other runtime error still ends the run. ``prefill_tokens`` reaches the decode batches'
  generators."""
  import jax
  import numpy as np
  from experiments import bench_e2e
  model, bench = _tiny_interpreted_model()
  bench.update(batch_sizes="1,2,3", prefill_lengths="16", timed_runs=1, hbm_bytes_per_s=1e12,
               bf16_flops_per_s=1e14, prefill_tokens=24)
  real = bench_e2e._decode

  def decode(model, bench, batch, *args):
    if batch == 2:
      raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to "
                                       "allocate 81.00GiB.\nmore detail")
    return real(model, bench, batch, *args)
  monkeypatch.setattr(bench_e2e, "_decode", decode)
  real_generator, prefill_tokens = bench_e2e.Generator, []

  def generator(*args, **kwargs):
    prefill_tokens.append(kwargs.get("prefill_tokens"))
    return real_generator(*args, **kwargs)
  monkeypatch.setattr(bench_e2e, "Generator", generator)
  rows = bench_e2e._cases(model, bench, np.random.default_rng(0), {})
  assert prefill_tokens == [24, 24, None]  # the decode batches' (not the prefill's: one row)
  assert [(r["kind"], r["batch"], "error" in r) for r in rows] == [
      ("decode", 1, False), ("decode", 2, True), ("decode", 3, False), ("prefill", 1, False)]
  assert rows[1]["error"] == ("out of device memory: RESOURCE_EXHAUSTED: Out of memory while "
                              "trying to allocate 81.00GiB.")
  # The prefill's roofline: the slower of its FLOPs and its weight reads (here the reads, at a
  # rate set low for it).
  cfg, prefill = model.cfg, rows[3]
  reads_s = benchmarking.prefill_bytes(cfg, 16) / 1e12
  assert reads_s > benchmarking.prefill_flops(cfg, 16) / 1e14
  assert prefill["roofline_bound"] == "hbm"
  assert prefill["roofline_tokens_per_s"] == pytest.approx(16 / reads_s)
  bench.update(hbm_bytes_per_s=1e18)  # reads now take no time: the FLOPs bound it
  prefill = bench_e2e._prefill(model, bench, 16, np.random.default_rng(0))
  assert prefill["roofline_bound"] == "flops"
  assert prefill["roofline_tokens_per_s"] == pytest.approx(
      16 / (benchmarking.prefill_flops(cfg, 16) / 1e14))
  assert "decode batch    2 context     24: out of device memory: RESOURCE_EXHAUSTED" in (
      capsys.readouterr().out)

  def broken(*args):
    raise jax.errors.JaxRuntimeError("INTERNAL: something else")
  monkeypatch.setattr(bench_e2e, "_decode", broken)
  with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
    bench_e2e._cases(model, bench, np.random.default_rng(0), {})


def test_bench_e2e_reports_a_generators_out_of_memory_as_it_is_worded(monkeypatch):
  """A Generator's `DeviceMemoryError` already names the phase and its sizes: its line is the
  row's error, not prefixed again."""
  import numpy as np
  from experiments import bench_e2e
  from mxfp4_jax.device_memory import DeviceMemoryError
  model, bench = _tiny_interpreted_model()
  bench.update(batch_sizes="2", prefill_lengths="", timed_runs=1)
  message = "out of device memory prefilling 2 prompts of 24 tokens, 1 a call: ..."

  def decode(*args):
    raise DeviceMemoryError(message + "\nmore")
  monkeypatch.setattr(bench_e2e, "_decode", decode)
  [row] = bench_e2e._cases(model, bench, np.random.default_rng(0), {})
  assert row["error"] == message


def test_bench_e2e_checks_kernel_options_against_the_tuned_kernel(monkeypatch):
  """Options are tried on the rows of every batch and prompt of the run, one-row tiles (batch
  1) and groups (the prompt) alike, before anything is timed; one that changes the results is
  refused, naming the flag, the matmul and the row count."""
  from absl import app
  from experiments import bench_e2e
  model, bench = _tiny_interpreted_model()
  bench.update(batch_sizes="1", prefill_lengths="16", kernel_options="prefetch=1")
  seen = []
  real = bench_e2e.grouped_matmul

  def recording(x, *args, **kwargs):
    seen.append((x.shape[0], kwargs["row_experts"] is not None, dict(tuning._overrides)))
    return real(x, *args, **kwargs)
  monkeypatch.setattr(bench_e2e, "grouped_matmul", recording)
  bench_e2e.check_kernel_options(model, bench, {"prefetch": 1})
  assert {(rows, by_row) for rows, by_row, _ in seen} == {(2, True), (32, False)}  # top 2
  assert {str(options) for *_, options in seen} == {"{}", "{'prefetch': 1}"}

  def wrong_with_options(x, *args, **kwargs):  # a kernel option that breaks the down matmul
    out = real(x, *args, **kwargs)
    return out * 1.5 if tuning._overrides and kwargs.get("activation") is None else out
  monkeypatch.setattr(bench_e2e, "grouped_matmul", wrong_with_options)
  with pytest.raises(app.UsageError, match=r"kernel_options='prefetch=1': down of 1 tokens "
                                           r"\(2 rows\) differs from the tuned kernel by 5.00e-01"):
    bench_e2e.check_kernel_options(model, bench, {"prefetch": 1})


def test_decode_roofline_of_20b_batch_1():
  """About 3.7 GB a step (experts 1.27, attention 1.27, unembedding 1.16): ~860 tok/s at 3.22
  TB/s."""
  from configs import gpt_oss_20b
  from mxfp4_jax.model import GptOssConfig
  cfg = GptOssConfig.from_dict(gpt_oss_20b.get_config().model)
  parts = benchmarking.decode_step_bytes(cfg, 1, 1024)
  assert abs(parts["experts"] - 24 * 4 * 3 * 2880 * 2880 * 4.25 / 8) / parts["experts"] < 0.01
  assert 3.6e9 < sum(parts.values()) < 3.8e9
  kv_slots = 12 * 1024 + 12 * 128  # full layers read the context, sliding ones their window
  assert parts["kv_cache"] == kv_slots * 2 * (8 * 64) * 2  # keys and values of 8 heads, bf16
  assert parts["attention"] == 24 * (2880 * (64 + 2 * 8) * 64 + 64 * 64 * 2880) * 2
  assert parts["unembedding"] == 201088 * 2880 * 2
  wide = benchmarking.decode_step_bytes(
      GptOssConfig.from_dict({**gpt_oss_20b.get_config().model, "dtype": "float32"}), 1, 1024)
  assert wide["experts"] == parts["experts"]  # MXFP4 whatever the model computes in
  for dense in ("attention", "router", "kv_cache", "unembedding"):
    assert wide[dense] == 2 * parts[dense]


def test_prefill_flops_count_the_unembedding_once():
  """Generation's prefill computes logits at the last position only."""
  from configs import gpt_oss_20b
  from mxfp4_jax.model import GptOssConfig
  cfg = GptOssConfig.from_dict(gpt_oss_20b.get_config().model)
  unembedding = 2 * cfg.vocab_size * cfg.hidden_size
  for length in (1, 1024, 8192):
    every_position = length * benchmarking.flops_per_token(cfg, length // 2)
    assert benchmarking.prefill_flops(cfg, length) == every_position - (length - 1) * unembedding


def test_a_short_120b_prefill_is_bound_by_its_weights_not_its_flops():
  """At 1k tokens every 120b expert gets rows (61 GB to read: more time at 3.22 TB/s than the
  FLOPs take at 670 TF/s); 20b's 1k and 120b's 8k prefills are bound by their FLOPs."""
  from configs import gpt_oss_20b, gpt_oss_120b
  from mxfp4_jax.model import GptOssConfig

  def seconds(config, length):
    cfg = GptOssConfig.from_dict(config.get_config().model)
    return (benchmarking.prefill_bytes(cfg, length) / 3.22e12,
            benchmarking.prefill_flops(cfg, length) / 670e12)
  bytes_s, flops_s = seconds(gpt_oss_120b, 1024)
  assert 60e9 < bytes_s * 3.22e12 < 66e9 and bytes_s > flops_s
  for config, length in ((gpt_oss_20b, 1024), (gpt_oss_120b, 8192)):
    bytes_s, flops_s = seconds(config, length)
    assert bytes_s < flops_s


def test_kernel_fingerprint_names_the_cases_that_changed(tmp_path):
  """The same code fingerprints alike run to run; a case whose recorded kernel differs from
  today's is named, and the wrapper's fingerprint is compared on its own."""
  args = ("experiments.kernel_fingerprint", "--config.shapes=20b_down", "--config.rows=4",
          "--config.variant_shapes=3x224x48", "--config.variant_k_splits=1",
          "--config.variant_prefetch=0")
  first = _run(*args, f"--config.output_dir={tmp_path / 'first'}")
  assert first.returncode == 0, first.stderr
  record = json.loads((tmp_path / "first" / "fingerprints.json").read_text())
  cases = len(record["fingerprints"])
  assert cases == 2 + 4 * len(tuning.TABLE)  # P = 4 two ways; each row's 4 variants
  changed = "20b_down/P4/rows"
  record["fingerprints"][changed]["kernels"][0] = "0" * 16
  (tmp_path / "doctored").mkdir()
  (tmp_path / "doctored" / "fingerprints.json").write_text(json.dumps(record))
  second = _run(*args, f"--config.output_dir={tmp_path / 'second'}",
                f"--config.compare={tmp_path / 'doctored'}")
  assert second.returncode == 0, second.stderr
  assert f"kernels: {cases - 1} of {cases} cases unchanged; changed: {changed}\n" in second.stdout
  assert f"wrapper: {cases} of {cases} cases unchanged\n" in second.stdout


def test_kernel_sass_loop_stats_parses_the_disassembly():
  """The loop finder of experiments.kernel_sass, on a hand-written cuobjdump excerpt."""
  from experiments.kernel_sass import loop_stats
  sass = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   LOP3.LUT R2, R3, 0x7, RZ, 0xc0, !PT ;
        /*0020*/                   IMAD.SHL.U32 R4, R2, 0x40, RZ ;
        /*0030*/                   HGMMA.64x16x16.F32.BF16 R24, R4, gdesc[UR4], R24 ;
        /*0040*/              @P0  BRA 0x10 ;
        /*0050*/                   EXIT ;
  """
  whole, [loop] = loop_stats(sass)
  assert loop["instructions"] == 4
  assert loop["opcodes"] == {"LOP3": 1, "IMAD": 1, "HGMMA": 1, "BRA": 1}
  assert whole["instructions"] == 6 and whole["opcodes"]["EXIT"] == 1


def test_step_kernels_lists_the_loop_body_instructions_that_launch_work():
  """experiments.step_kernels on a hand-written excerpt of optimized HLO: the while body's
  fusions and custom calls, not its parameters, tuples, bitcasts or the loop's condition."""
  from experiments.step_kernels import loop_body_kernels
  hlo = """
%cond (p: (s32[], f32[8])) -> pred[] {
  %p = (s32[], f32[8]{0}) parameter(0)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p = (s32[], f32[8]{0}) parameter(0)
  %x = f32[8]{0} get-tuple-element(%p), index=1
  %b = f32[2,4]{1,0} bitcast(%x)
  %input_reduce_fusion = f32[] fusion(%x), kind=kInput, calls=%r, metadata={op_name="jit(f)/while/body/eval_jaxpr/reduce_sum"}
  %pallas_call.3 = f32[8]{0} custom-call(%x), custom_call_target="__gpu$xla.gpu.triton", metadata={op_name="jit(f)/while/body/eval_jaxpr/mxfp4_moe/pallas_call"}
  ROOT %t = (s32[], f32[8]{0}) tuple(%i, %pallas_call.3)
}

ENTRY %main (a: f32[8]) -> f32[8] {
  %w = (s32[], f32[8]{0}) while(%init), condition=%cond, body=%body
}
"""
  kernels = loop_body_kernels(hlo)
  assert [(k["op"], k["name"], k["shape"]) for k in kernels] == [
      ("fusion", "input_reduce_fusion", "f32[]"), ("custom-call", "pallas_call.3", "f32[8]{0}")]
  assert kernels[0]["source"] == "reduce_sum" and kernels[1]["source"] == "mxfp4_moe/pallas_call"
  assert kernels[1]["target"] == "__gpu$xla.gpu.triton"


def test_step_kernels_without_the_cuda_compiler_is_a_one_line_error():
  import importlib.util
  plugins = importlib.util.find_spec("jax_plugins")
  if plugins and any((pathlib.Path(p) / f"xla_cuda{v}").exists()
                     for p in plugins.submodule_search_locations for v in (12, 13)):
    pytest.skip("XLA's CUDA plugin is installed: the program compiles")
  result = _run("experiments.step_kernels")
  assert result.returncode != 0
  assert "needs XLA's CUDA plugin" in result.stderr and "Traceback" not in result.stderr


def test_time_per_call_lengthens_a_chain_lost_in_noise(monkeypatch):
  """Slopes are scripted: a negative one (noise) and a too-short span both grow the long chain."""
  seen = []
  scripted = iter([(-1e-6, 4e-4), (20e-6, 1e-3), (20e-6, 2e-3)])

  def fake(chain, copies, low_n, high_n, repeats):
    seen.append((low_n, high_n))
    return next(scripted)

  monkeypatch.setattr(benchmarking, "_median_slope", fake)
  assert benchmarking.time_per_call(None, [(None,)], calls=(4, 12)) == 20e-6
  # 12 calls took 0.4 ms -> at most 33 us a call -> 4 + 1.5 ms / 33 us = 49 calls; then 20 us a
  # call over 45 more calls spans 0.9 ms < 1 ms -> at least double: 98, which spans 1.9 ms.
  assert seen == [(4, 12), (4, 49), (4, 98)]


@pytest.mark.parametrize("perturb, products", [(0, 8), (2, 2)])
def test_a_chain_keeps_its_calls_where_the_dependency_feeds_the_work(perturb, products):
  """A chain of 8 calls of (x @ w) * r over 2 copies: carried through x, all 8 products
  compile; through r, which feeds only the epilogue, XLA merges the calls that share a copy
  into 2 (why `time_per_call` must perturb an argument the work reads)."""
  fn = lambda x, w, r: (x @ w) * r
  key = jax.random.PRNGKey(0)
  copies = [(jax.random.normal(key, (16, 32)), jax.random.normal(key, (32, 64)) + i,
             jax.random.normal(key, (16, 64))) for i in range(2)]
  chain = benchmarking._chain(fn, copies, 8, perturb)
  hlo = chain.func.lower(copies, **chain.keywords).compile().as_text()
  assert len(re.findall(r" dot\(", hlo)) == products
  assert chain(copies).shape == (8,)


@pytest.mark.parametrize("slope", [-1e-6, 1e-9])
def test_time_per_call_refuses_a_slope_it_cannot_resolve(monkeypatch, slope):
  """A negative slope, and a positive one whose 508 extra calls span 0.5 us, are noise."""
  monkeypatch.setattr(benchmarking, "_median_slope", lambda *a: (slope, 1e-4))
  with pytest.raises(RuntimeError, match="no slope resolved between 4 and 512 calls"):
    benchmarking.time_per_call(None, [(None,)], calls=(4, 12))


def test_random_routing_fills_every_row():
  sizes = benchmarking.random_routing(jax.random.PRNGKey(0), 10, 3, top_k=2)
  assert sizes.shape == (3,) and int(sizes.sum()) == 10 and int(sizes.max()) <= 5
  with pytest.raises(ValueError, match=r"top_k=4 must be in \[1, num_experts=2\]"):
    benchmarking.random_routing(jax.random.PRNGKey(0), 10, 2, top_k=4)


def test_time_per_call_needs_perturb_for_several_arguments():
  with pytest.raises(ValueError, match="fn takes 2 arguments; pass perturb="):
    benchmarking.time_per_call(None, [(None, None)])


@pytest.mark.parametrize("calls, repeats", [((8, 8), 3), ((0, 4), 3), ((2, 8), 0)])
def test_time_per_call_refuses_chains_without_a_slope(calls, repeats):
  with pytest.raises(ValueError, match=r"must be two chain lengths 1 <= low < high"):
    benchmarking.time_per_call(None, [(None,)], calls=calls, repeats=repeats)


def _write_trace(path, events):
  import gzip
  import json
  path.parent.mkdir(parents=True, exist_ok=True)
  meta = [dict(ph="M", pid=1, name="process_name", args=dict(name="/host:CPU")),
          dict(ph="M", pid=2, name="process_name", args=dict(name="/device:GPU:0")),
          dict(ph="M", pid=2, tid=7, name="thread_name", args=dict(name="Stream #7(Compute)")),
          dict(ph="M", pid=2, tid=8, name="thread_name", args=dict(name="XLA Ops"))]
  with gzip.open(path, "wt") as f:
    json.dump(dict(traceEvents=meta + events), f)


def test_trace_summary_counts_stream_kernels_per_step(tmp_path):
  """Kernels on the GPU stream only (not the host, not the "XLA Ops" line that repeats them);
  busy is the union of intervals, span first start to last end; figures per step."""
  x = lambda pid, tid, ts, dur, name: dict(ph="X", pid=pid, tid=tid, ts=ts, dur=dur, name=name)
  _write_trace(tmp_path / "plugins/profile/run/perfetto_trace.json.gz", [
      x(2, 7, 0, 10, "fusion.1"), x(2, 7, 5, 10, "fusion.2"), x(2, 7, 30, 30, "mxfp4_gemm"),
      x(2, 8, 0, 50, "fusion.1"), x(1, 3, 0, 999, "PjitFunction")])
  result = _run("experiments.trace_summary", f"--trace={tmp_path}", "--steps=2")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == ("1.5 GPU events/step | busy 22.5 us/step | span 30.0 us/step | "
                      "idle 25.0%")
  assert lines[4].split() == ["15.0", "60.0%", "0.5", "mxfp4_gemm"]
  assert lines[5].split() == ["10.0", "40.0%", "1.0", "fusion"]  # fusion.1 and fusion.2
  by_fusion = lines[lines.index("by fusion:") + 2:]
  assert [l.split()[-1] for l in by_fusion[:3]] == ["mxfp4_gemm", "fusion.1", "fusion.2"]
  gaps = lines[lines.index("longest idle gaps (whole trace):") + 2:]
  assert gaps[0].split() == ["15.0", "15.0", "fusion.2", "->", "mxfp4_gemm"]  # not per step


def test_trace_summary_span_ends_at_the_latest_end(tmp_path):
  """A kernel that starts last may end before one that started earlier (overlapping kernels)."""
  x = lambda ts, dur, name: dict(ph="X", pid=2, tid=7, ts=ts, dur=dur, name=name)
  _write_trace(tmp_path / "perfetto_trace.json.gz", [x(0, 100, "long"), x(10, 5, "short")])
  result = _run("experiments.trace_summary", f"--trace={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[0] == ("2.0 GPU events/step | busy 100.0 us/step | "
                                           "span 100.0 us/step | idle 0.0%")


@pytest.mark.parametrize("case, message", [
    ("empty", "no GPU events in the trace"),
    ("not_gzip", "is not a gzipped JSON trace"),
    ("not_trace", "is not a gzipped JSON trace (no traceEvents list)"),
    ("top", "--top must be >= 1, got 0"),
])
def test_trace_summary_bad_input_is_a_one_line_error(tmp_path, case, message):
  import gzip
  trace = tmp_path / "perfetto_trace.json.gz"
  _write_trace(trace, [dict(ph="X", pid=2, tid=7, ts=0, dur=1, name="k")] if case == "top" else [])
  if case == "not_gzip":
    trace.write_text("{}")
  if case == "not_trace":
    with gzip.open(trace, "wt") as f:
      f.write("[1]")
  result = _run("experiments.trace_summary", f"--trace={tmp_path}",
                *(["--top=0"] if case == "top" else []))
  assert result.returncode != 0
  assert message in result.stderr and "Traceback" not in result.stderr


def test_generate_prints_the_final_channel_with_characters_whole():
  """The printer shows the final channel only; a character whose bytes arrive in two steps is
  printed once whole, never as a replacement character. (In a fresh process: importing an
  experiment defines its absl flags.)"""
  code = """
from absl import flags
from experiments import generate
from mxfp4_jax.generate.tokenizer import tiny_tokenizer
flags.FLAGS.mark_as_parsed()
tokenizer = tiny_tokenizer()
printer = generate._Printer(tokenizer, rows=1)
euro = tokenizer.encode("\u20ac", allow_special=False)
printer([tokenizer.encode("<|channel|>analysis<|message|>hm<|end|><|start|>assistant"
                          "<|channel|>final<|message|>x ") + euro[:1]])
printer([euro[1:]])
printer.finish()
"""
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
  assert result.returncode == 0, result.stderr
  assert result.stdout.rstrip("\n") == "x \u20ac"


def test_generate_shows_a_completion_without_final_text_raw():
  """No final channel: the completion's start is shown as Python's repr, a newline as one
  escape (not escaped twice)."""
  code = """
from absl import flags
from experiments import generate
from mxfp4_jax.generate.tokenizer import tiny_tokenizer
flags.FLAGS.mark_as_parsed()
tokenizer = tiny_tokenizer()
printer = generate._Printer(tokenizer, rows=1)
printer([tokenizer.encode("<|channel|>analysis<|message|>a\\nb")])
printer.finish()
"""
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr
  assert "no final-channel text; the raw completion begins: '" in result.stdout
  assert "a\\nb'" in result.stdout and "a\\\\nb" not in result.stdout, result.stdout


def test_generate_names_the_flags_when_the_device_runs_out_of_memory():
  """The Generator's one-line out-of-memory error comes with the flags that set the batch and
  the cache, as a usage error (no traceback). (In a fresh process, the generation failing.)"""
  code = """
import sys
from absl import app
from experiments import generate
from mxfp4_jax.device_memory import DeviceMemoryError
from mxfp4_jax.generate import engine
def out_of_memory(self, *args, **kwargs):
  raise DeviceMemoryError("out of device memory prefilling 1 row of 40 tokens")
engine.Generator.generate = out_of_memory
sys.argv = ["generate", "--max_new_tokens=2"]
app.run(generate.main)
"""
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode != 0
  assert ("--prompt, --config.max_len, --config.prefill_tokens: out of device memory prefilling 1 "
          "row of 40 tokens" in result.stderr)
  assert "Traceback" not in result.stderr


def test_load_ceiling_xors_every_byte_a_program_reads():
  import jax
  import jax.numpy as jnp
  from experiments.load_ceiling import byte_words, xor_reads
  from mxfp4_jax.mxfp4.layout import random_packed
  w = random_packed(jax.random.PRNGKey(0), 3, 256, 128, swiglu_halves=True)
  experts = jnp.array([2, 0], jnp.int32)
  words = byte_words(w)  # [E, 4 K tiles, 128, 8]
  out = xor_reads(experts, words, w.scales, block_n=16, k_splits=2, swiglu=True, interpret=True)
  for p, e in enumerate(experts.tolist()):
    for c in range(4):  # column tiles of the 64 SwiGLU outputs
      for s in range(2):
        rows = jnp.r_[c * 16:(c + 1) * 16, 64 + c * 16:64 + (c + 1) * 16]
        expected = jnp.zeros((16, 8), jnp.uint32)
        for kt in (2 * s, 2 * s + 1):
          for part in (rows[:16], rows[16:]):
            expected ^= words[e, kt, part]
            for half in range(2):
              expected ^= w.scales[e, 2 * kt + half, part].astype(jnp.uint32)[:, None]
        assert (out[p, c, s] == expected).all(), (p, c, s)


def test_weight_copies_leave_l2_unless_asked_to_stay_in_it():
  from configs import tune_kernel  # noqa: PLC0415
  from experiments.tune_kernel import copies_to_rotate  # noqa: PLC0415
  config = tune_kernel.get_config()
  # 20b down at P = 4: 4 experts of 4.4 MB a call, so 100 MB of rotation needs 6 copies; at
  # least config.weight_copies (8).
  assert copies_to_rotate("20b_down", config, 4) == 8
  config.weights_in_l2 = True
  assert copies_to_rotate("20b_down", config, 4) == 2


def test_confirm_times_candidates_in_turn_and_ranks_their_medians():
  from experiments.tune_kernel import confirm  # noqa: PLC0415
  from mxfp4_jax.kernels import KernelConfig  # noqa: PLC0415
  a, b, c = (KernelConfig(block_m=16, block_n=64, num_warps=4, num_stages=s) for s in (2, 3, 4))
  runs = iter([5.0, 1.0, 3.0,  # round 1: a, b, c
               1.0, 9.0, 3.0,  # round 2: b has one slow run and a one fast one
               5.0, 2.0, 3.0])
  order = []

  def seconds_of(cfg):
    order.append(cfg)
    return next(runs)

  ranked = confirm([a, b, c, b], seconds_of, rounds=3)  # b twice: timed once a round
  assert order == [a, b, c] * 3
  assert [(m, cfg) for m, _, cfg in ranked] == [(2.0, b), (3.0, c), (5.0, a)]
  assert ranked[0][1] == [1.0, 9.0, 2.0]


def test_first_line_of_an_error_without_a_message_is_its_type():
  from experiments import common
  assert common.first_line(ValueError("bad shape\nat depth")) == "bad shape"
  assert common.first_line(AssertionError()) == "AssertionError"


def test_bench_kernel_runs_the_models_row_layout(monkeypatch):
  """Up to P = E / 2 the rows run one tile each, as a decode step's do, and the timed chain
  perturbs x; past it they are sorted by expert and the group sizes carry the chain. Kernel
  options replace fields of every config the calls pick."""
  from configs.bench_kernel import SHAPES, get_config
  from experiments import bench_kernel, kernel_problems
  from mxfp4_jax.kernels import tuning
  monkeypatch.setitem(SHAPES, "20b_down", (8, 64, 48, None))
  layouts, perturbed, overrides = [], [], []

  def interpreted(*args, by_row, **kwargs):
    layouts.append(by_row)
    overrides.append(dict(tuning._overrides))
    return kernel_problems.kernel_call(*args, by_row=by_row, interpret=True, **kwargs)

  def timed(fn, copies, perturb, **kwargs):
    perturbed.append(perturb)
    jax.block_until_ready(fn(*copies[0]))
    return 1e-3
  monkeypatch.setattr(bench_kernel, "kernel_call", interpreted)
  monkeypatch.setattr(bench_kernel.benchmarking, "time_per_call", timed)
  config = get_config()
  config.update(dict(shapes="20b_down", rows="2,8", top_k=2, baselines="", weight_copies=2,
                     hbm_bytes_per_s=1e12, bf16_flops_per_s=1e14, kernel_options="decode=lut"))
  rows = []
  bench_kernel.bench(config, rows)
  assert overrides and all(o == {"decode": "lut"} for o in overrides)
  assert [r["one_row_tiles"] for r in rows] == [True, False]
  assert all(r["rel_err"] < 1e-2 for r in rows)
  assert set(layouts) == {True, False} and perturbed == [kernel_problems.PERTURB_BY_ROW,
                                                          kernel_problems.PERTURB]
  assert "row tiles" in bench_kernel._format_row(rows[0])
  for row in rows:  # 1 ms a call; ceilings of 1 TB/s and 100 TF/s
    expert_bytes = 64 * 48 * 17 // 32  # 4.25 bits a weight (the benchmark's experts have no bias)
    nbytes = row["active_experts"] * expert_bytes + row["rows"] * (64 * 2 + 48 * 4)  # x, out
    assert row["mxfp4_ms"] == pytest.approx(1.0)
    assert row["mxfp4_tb_per_s"] == pytest.approx(nbytes / 1e-3 / 1e12)
    assert row["mxfp4_tflop_per_s"] == pytest.approx(2 * row["rows"] * 64 * 48 / 1e-3 / 1e12)
    assert row["mxfp4_hbm_roofline"] == pytest.approx(nbytes / 1e12 / 1e-3)
    assert row["mxfp4_tc_roofline"] == pytest.approx(2 * row["rows"] * 64 * 48 / 1e14 / 1e-3)
  # A kernel past --config.max_rel_err stops the run; the rows measured before it are kept.
  config.update(dict(max_rel_err=0.5))
  monkeypatch.setattr(bench_kernel, "kernel_call", lambda *args, by_row, **kwargs: (
      1 if by_row else 3) * interpreted(*args, by_row=by_row, **kwargs))  # P = 8 wrong
  rows = []
  with pytest.raises(bench_kernel.WrongKernel, match=r"20b_down P=8: the kernel is 2.00e\+00 "):
    bench_kernel.bench(config, rows)
  assert [r["rows"] for r in rows] == [2]


def test_weight_copies_say_when_the_byte_cap_leaves_them_in_l2(capsys):
  from experiments.kernel_problems import weight_copies
  config = ml_collections.ConfigDict(dict(top_k=4, weight_copies=8, max_weight_bytes=6e9))
  assert weight_copies("120b_gate_up", config, 1) == 5  # 5 x 1.13 GB under the cap: 44 MB read
  assert "5 copies touch 44 MB a rotation, under the 100 MB" in capsys.readouterr().out
  config.max_weight_bytes = 20e9
  assert weight_copies("120b_gate_up", config, 1) == 12  # 106 MB
  assert weight_copies("20b_gate_up", config, 4) == 8
  assert capsys.readouterr().out == ""


def test_the_benchmarks_shapes_are_the_models():
  """The benchmark configs spell GPT-OSS's shapes out for the reader; they must stay the model
  configs' own."""
  from configs import bench_attention, gpt_oss_20b, gpt_oss_120b
  from configs.bench_kernel import SHAPES
  attention = bench_attention.get_config()
  for name, module in (("20b", gpt_oss_20b), ("120b", gpt_oss_120b)):
    m = module.get_config().model
    assert SHAPES[f"{name}_gate_up"] == (m.num_experts, m.hidden_size, 2 * m.intermediate_size,
                                         "swiglu")
    if f"{name}_down" in SHAPES:
      assert SHAPES[f"{name}_down"] == (m.num_experts, m.intermediate_size, m.hidden_size, None)
    assert (attention.kv_heads, attention.group, attention.head_dim) == (
        m.num_kv_heads, m.num_heads // m.num_kv_heads, m.head_dim)


def test_compiler_options_read_bools_ints_and_names():
  from experiments import common
  text = ("xla_gpu_command_buffer_scheduling_mode=CONCURRENT, xla_gpu_autotune_level=2,"
          "xla_gpu_graph_enable_concurrent_region=TRUE")
  options = common.compiler_options(text, "--flag")
  assert options == {"xla_gpu_command_buffer_scheduling_mode": "CONCURRENT",
                     "xla_gpu_autotune_level": 2, "xla_gpu_graph_enable_concurrent_region": True}
  assert type(options["xla_gpu_autotune_level"]) is int
  assert common.compiler_options("", "--flag") == {}


def test_the_configs_decode_options_are_the_librarys_default_unless_set():
  """Unset, the configs' decode options are None (`Generator`'s default); set, text."""
  from configs import generate, gpt_oss_20b
  from experiments import common
  for config in (generate.get_config(), gpt_oss_20b.get_config().bench):
    assert common.compiler_options(config.decode_compiler_options, "--flag") is None
    config.decode_compiler_options = "xla_gpu_autotune_level=2"
    assert common.compiler_options(config.decode_compiler_options, "--flag") == {
        "xla_gpu_autotune_level": 2}
