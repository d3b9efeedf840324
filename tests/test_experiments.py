"""The experiments run end to end through the config system, as a user would run them."""

import pathlib
import subprocess
import sys

import pytest

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


def test_mxfp4_demo_rejects_a_bad_flag_in_one_line():
  result = _run("experiments.mxfp4_demo", "--config.cols=33")
  assert result.returncode != 0
  assert "--config.cols=33 must be a multiple of 32" in result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bench_kernel_eager_smoke_runs_the_kernel():
  result = _run("experiments.bench_kernel", "--config.mode=eager_smoke")
  assert result.returncode == 0, result.stderr
  line = next(l for l in result.stdout.splitlines() if l.startswith("eager smoke"))
  rel_err = float(line.split("rel err ")[1].split(",")[0])
  assert rel_err < 1e-2 and "tail rows zero: True" in line
