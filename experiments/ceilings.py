"""The two ceilings every roofline here divides by, measured on this device: HBM read
bandwidth (a sum over the array: the MXFP4 kernels and a decode step mostly read) and the bf16
matmul rate (a chain of d x d x d products). Also the copy rate (bytes read + written), which a
read-only stream outruns.

  python -m experiments.ceilings --config=configs/ceilings.py

Prints them and writes ``results.json``; pass the first two on as ``--config.hbm_bytes_per_s``
and ``--config.bf16_flops_per_s`` (bench_kernel) or ``--config.bench.*`` (bench_e2e).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from absl import app

from experiments import common
from mxfp4_jax import benchmarking
from mxfp4_jax.argcheck import is_real

_CONFIG = common.define_config("ceilings.py")
MATMULS_PER_CALL = 8


def _seconds(flag: str, value, *args, **kwargs) -> float:
  """`benchmarking.time_per_call`; a size too small to time (its slope lost in the noise) is a
  one-line error naming the flag that set it."""
  try:
    return benchmarking.time_per_call(*args, **kwargs)
  except RuntimeError as e:
    raise app.UsageError(f"{flag}={value}: too small to time here ({common.first_line(e)})"
                         ) from None


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  if not (is_real(config.array_bytes) and config.array_bytes >= 2**20
          and math.isfinite(config.array_bytes)):
    raise app.UsageError(f"--config.array_bytes must be at least 2**20, got {config.array_bytes!r}")
  common.positive("--config.matmul_size", config.matmul_size)
  key = jax.random.PRNGKey(0)
  n = int(config.array_bytes) // 2
  arrays = [(jax.random.normal(k, (n,), jnp.bfloat16),) for k in jax.random.split(key, 2)]
  size = ("--config.array_bytes", config.array_bytes)
  copy_s = _seconds(*size, lambda a: a * 2, arrays, calls=(2, 6), perturb=0)
  read_s = _seconds(*size, lambda a: jnp.sum(a, dtype=jnp.float32), arrays, calls=(2, 6),
                    perturb=0)
  del arrays
  d = config.matmul_size
  # b scaled by 1 / sqrt(d) keeps a @ b at a's scale, so a call can chain `MATMULS_PER_CALL`
  # products on its own output: the pass over ``a`` that links one timed call to the next is
  # then a small part of each call.
  mats = [(jax.random.normal(k1, (d, d), jnp.bfloat16),
           (jax.random.normal(k2, (d, d), jnp.float32) / d ** 0.5).astype(jnp.bfloat16))
          for k1, k2 in jax.random.split(key, (2, 2))]

  def products(a, b):
    step = lambda _, a: jnp.dot(a, b, preferred_element_type=jnp.float32).astype(jnp.bfloat16)
    return jax.lax.fori_loop(0, MATMULS_PER_CALL, step, a)

  matmul_s = _seconds("--config.matmul_size", d, products, mats, calls=(1, 3),
                      perturb=0) / MATMULS_PER_CALL
  result = dict(device=common.device_description(),
                hbm_bytes_per_s=n * 2 / read_s, bf16_flops_per_s=2 * d ** 3 / matmul_s,
                hbm_copy_bytes_per_s=2 * n * 2 / copy_s, array_bytes=n * 2, read_ms=read_s * 1e3,
                copy_ms=copy_s * 1e3, matmul_size=d, matmul_ms=matmul_s * 1e3)
  out = common.output_dir(config, "ceilings")
  common.write_json(out / "results.json", result)
  print(f"{result['device']}: read {result['hbm_bytes_per_s'] / 1e12:.2f} TB/s, bf16 matmul "
        f"{d}^3 {result['bf16_flops_per_s'] / 1e12:.0f} TF/s (the rooflines' ceilings); copy "
        f"{result['hbm_copy_bytes_per_s'] / 1e12:.2f} TB/s (reads and writes "
        f"{result['array_bytes'] / 1e9:.1f} GB each); wrote {out}")


if __name__ == "__main__":
  app.run(main)
