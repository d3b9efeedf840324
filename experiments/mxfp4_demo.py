"""Quantize a matrix to MXFP4 and print error statistics and bytes saved.

  python -m experiments.mxfp4_demo --config=configs/mxfp4_demo.py
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
from absl import app

from experiments import common
from mxfp4_jax import mxfp4

_CONFIG = common.define_config("mxfp4_demo.py")
_NPY_MAGIC = b"\x93NUMPY"  # how every .npy file begins
_ZIP_MAGIC = b"PK"  # an .npz archive, refused below with its own message
MAX_VALUES = 2**30  # of a random matrix


def _matrix(config) -> np.ndarray:
  if config.input:
    try:
      with open(config.input, "rb") as f:
        magic = f.read(len(_NPY_MAGIC))
      # numpy reads any other file as a pickle and refuses it as "pickled (object) data".
      if magic != _NPY_MAGIC and not magic.startswith(_ZIP_MAGIC):
        raise app.UsageError(f"--config.input: {config.input} is not a .npy file")
      w = np.load(config.input)
    except (OSError, ValueError) as e:  # missing, unreadable, or a damaged .npy file
      raise app.UsageError(f"--config.input: {e}") from None
    if not isinstance(w, np.ndarray):  # an .npz archive
      raise app.UsageError(f"--config.input must be one .npy array, got {type(w).__name__}")
    if w.dtype.kind not in "fiu":
      raise app.UsageError(f"--config.input must hold real numbers, got {w.dtype}")
    if w.ndim != 2 or w.shape[1] % mxfp4.BLOCK_SIZE or 0 in w.shape:
      raise app.UsageError(f"--config.input must hold a non-empty 2-D matrix whose K (shape[1]) "
                           f"is a multiple of {mxfp4.BLOCK_SIZE}, got shape {w.shape}")
    with np.errstate(over="ignore"):
      w32 = w.astype(np.float32)
    if not np.isfinite(w32).all():
      raise app.UsageError("--config.input holds NaN, infinity or values beyond float32's range")
    return w32
  common.positive("--config.rows", config.rows)
  common.positive("--config.cols", config.cols)
  if config.cols % mxfp4.BLOCK_SIZE:
    raise app.UsageError(f"--config.cols={config.cols} must be a multiple of {mxfp4.BLOCK_SIZE}")
  if config.rows * config.cols > MAX_VALUES:  # drawn in float64 first: 8 GB at the limit
    raise app.UsageError(f"--config.rows x --config.cols = {config.rows * config.cols:,} values, "
                         f"over the demo's {MAX_VALUES:,}")
  rng = np.random.default_rng(common.seed("--config.seed", config.seed))
  shape = (config.rows, config.cols)
  if config.distribution == "normal":
    return rng.standard_normal(shape).astype(np.float32) * 0.02
  if config.distribution == "student_t":
    return rng.standard_t(3, shape).astype(np.float32) * 0.02
  raise app.UsageError(f"--config.distribution must be 'normal' or 'student_t', "
                       f"got {config.distribution!r}")


def _relative(error_norm, norm) -> float:
  """An all-zero matrix round-trips exactly: 0, not 0 / 0."""
  return float(error_norm) / float(norm) if norm else 0.0


def report(w: np.ndarray) -> dict:
  """Error statistics of MXFP4 round-tripping ``w`` along its last axis."""
  blocks, scales = mxfp4.quantize(w)
  restored = np.asarray(mxfp4.dequantize(blocks, scales))
  error = restored - w
  return dict(
      shape=w.shape,
      rel_frobenius_error=_relative(np.linalg.norm(error), np.linalg.norm(w)),
      max_abs_error=float(np.abs(error).max()),
      mean_abs_error=float(np.abs(error).mean()),
      exact_fraction=float(np.mean(error == 0)),
      bf16_bytes=w.size * 2,
      mxfp4_bytes=int(blocks.size + scales.size),
      error=error,
  )


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  w = _matrix(config)
  histogram = pathlib.Path(config.histogram) if config.histogram else None
  if histogram:  # checked before the work, not by savefig after it
    from matplotlib.backend_bases import FigureCanvasBase  # noqa: PLC0415

    formats = FigureCanvasBase.get_supported_filetypes()
    if histogram.suffix.lower().lstrip(".") not in formats:
      raise app.UsageError(f"--config.histogram must end in one of matplotlib's formats "
                           f"({', '.join(sorted(formats))}), got {histogram}")
    common.check_dir_to_write("--config.histogram", histogram.parent)
    if histogram.is_dir():
      raise app.UsageError(f"--config.histogram: {histogram} is a directory")
  stats = report(w)
  print(f"MXFP4 round trip of a {stats['shape'][0]}x{stats['shape'][1]} matrix "
        f"({'from ' + config.input if config.input else config.distribution + ' random'}) "
        f"on {jax.default_backend()}:")
  print(f"  relative error (Frobenius) {stats['rel_frobenius_error']:.4f}")
  print(f"  max |error| {stats['max_abs_error']:.3e}, mean |error| {stats['mean_abs_error']:.3e}, "
        f"exact {stats['exact_fraction']:.1%}")
  print(f"  bytes: bf16 {stats['bf16_bytes']:,} -> MXFP4 {stats['mxfp4_bytes']:,} "
        f"({stats['bf16_bytes'] / stats['mxfp4_bytes']:.2f}x smaller, "
        f"{mxfp4.BITS_PER_WEIGHT} bits per weight)")
  if histogram:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    histogram.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(stats["error"].ravel(), bins=200, log=True)
    ax.set_xlabel("quantization error (dequantized - original)")
    ax.set_ylabel("count")
    ax.set_title("MXFP4 round-trip error")
    fig.tight_layout()
    fig.savefig(histogram, dpi=120)
    print(f"  histogram: {histogram}")


if __name__ == "__main__":
  app.run(main)
