"""Fingerprints of the grouped matmul as lowered and compiled for the H100, without a GPU.

  python -m experiments.kernel_fingerprint --config=configs/kernel_fingerprint.py
  python -m experiments.kernel_fingerprint --config.compare=results/kernel_fingerprint/<time>

A change meant to leave the kernels alone (a refactor, an unused option removed) is checked by
fingerprinting before and after: every case the config lists (bench_kernel's shapes at its P,
with group sizes and one tile a row, under the config `pick_config` gives them; then variants of
each TABLE row) is lowered for sm_90, and each case's fingerprint is the hash of the Triton IR of
each of its kernels (without debug info) and of the wrapper's StableHLO (the kernels' embedded
IR left out: it carries source lines). IR that differs only in ops the compiler folds (a multiply
by one) fingerprints differently; with ``--config.sass`` each kernel is also compiled with Triton
and its sm_90 disassembly hashed, which tells those apart from real changes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import pathlib
import re
import multiprocessing

from absl import app

from configs.bench_kernel import SHAPES
from experiments import common, hopper
from mxfp4_jax.kernels import tuning
from mxfp4_jax.mxfp4.layout import K_TILE

_CONFIG = common.define_config("kernel_fingerprint.py")
_EMBEDDED_IR = re.compile(r'ir = "(?:[^"\\]|\\.)*"')


def parse_shape(name: str, flag: str = "--config.shapes") -> tuple[int, int, int, str | None]:
  """A `SHAPES` name, or ``"ExKxN"`` / ``"ExKxN_swiglu"`` -> (E, K, N, activation): E >= 1
  experts, K a multiple of 32, and N (halved by the SwiGLU, so even) at least the kernel's 16
  output columns."""
  if name in SHAPES:
    return SHAPES[name]
  match = re.fullmatch(r"(\d+)x(\d+)x(\d+)(_swiglu)?", name)
  if not match:
    raise app.UsageError(f"{flag}: {name!r} is neither one of {sorted(SHAPES)} nor "
                         "ExKxN[_swiglu]")
  e, k, n = map(int, match.groups()[:3])
  swiglu = bool(match.group(4))
  if e < 1 or k < 32 or k % 32 or (n // 2 if swiglu else n) < 16 or (swiglu and n % 2):
    raise app.UsageError(f"{flag}: {name!r} needs E >= 1, K a multiple of 32 and at least 16 "
                         "output columns (N / 2 with _swiglu, N even)")
  return e, k, n, "swiglu" if swiglu else None


def cases(config):
  """(name, shape, rows, row_experts, KernelConfig) for each case the config lists."""
  for name in common.csv_list(config.shapes, str):
    shape = parse_shape(name)
    e, k, n, activation = shape
    out_cols = n // 2 if activation else n
    for rows, row_experts in itertools.product(common.csv_list(config.rows, int), (False, True)):
      if row_experts and rows > config.max_rows_one_tile_each:
        continue
      cfg = tuning.pick_config(rows, e, out_cols, -(-k // K_TILE), one_tile_per_row=row_experts)
      yield f"{name}/P{rows}/{'rows' if row_experts else 'groups'}", shape, rows, row_experts, cfg
  variations = dict(k_splits=common.csv_list(config.variant_k_splits, int),
                    prefetch=common.csv_list(config.variant_prefetch, int),
                    prefetch_scales=(False, True), unroll_split=(False, True))
  for name in common.csv_list(config.variant_shapes, str):
    shape = parse_shape(name, "--config.variant_shapes")
    out_cols = shape[2] // 2 if shape[3] else shape[2]
    for row, (_, base) in enumerate(tuning.TABLE):
      block_n = tuning.narrowed_block_n(base.block_n, out_cols)
      for values in itertools.product(*variations.values()):
        changes = dict(zip(variations, values))
        cfg = dataclasses.replace(base, block_n=block_n, **changes)
        label = "/".join(f"{key}={int(value)}" for key, value in changes.items())
        yield f"table{row}/{name}/{label}", shape, config.variant_rows, False, cfg


def _sass_hash(ttir: str, num_warps: int, num_stages: int) -> str:
  """The sm_90 disassembly of one kernel, hashed (in a worker process: Triton compiles)."""
  import tempfile  # noqa: PLC0415

  with tempfile.TemporaryDirectory() as tmp:
    hopper.compile_sm90(ttir, num_warps, num_stages, pathlib.Path(tmp))
    sass = hopper.cuobjdump("-sass", pathlib.Path(tmp) / "kernel.cubin")
  return _digest("\n".join(line for line in sass.splitlines() if "code for" not in line))


def _digest(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  for name in ("rows", "variant_rows", "variant_k_splits", "max_rows_one_tile_each", "workers"):
    common.positive(f"--config.{name}", config[name])
  # Every shape parsed before minutes of lowering, and at least one of them.
  shapes = [parse_shape(name, f"--config.{field}") for field in ("shapes", "variant_shapes")
            for name in common.csv_list(config[field], str)]
  if not shapes:
    raise app.UsageError("--config.shapes and --config.variant_shapes are both empty: nothing "
                         "to fingerprint")
  common.at_least("--config.variant_prefetch", config.variant_prefetch, 0)
  if config.sass:
    hopper.require_triton("--config.sass")
  earlier = pathlib.Path(config.compare) / "fingerprints.json"
  if config.compare and not earlier.is_file():  # checked before minutes of lowering
    raise app.UsageError(f"--config.compare: no {earlier} (an earlier run's output_dir)")
  fingerprints, compile_jobs = {}, {}
  for name, shape, rows, row_experts, cfg in cases(config):
    kernels, hlo = hopper.lower_for_hopper(shape, rows, row_experts, cfg)
    fingerprints[name] = dict(kernels=[_digest(ttir) for ttir in kernels],
                              wrapper=_digest(_EMBEDDED_IR.sub("ir = ...", hlo)))
    for ttir in kernels:
      compile_jobs.setdefault(_digest(ttir), (ttir, cfg.num_warps, cfg.num_stages))
  print(f"{len(fingerprints)} cases, {len(compile_jobs)} distinct kernels")
  if config.sass:
    with concurrent.futures.ProcessPoolExecutor(  # spawned: JAX's threads and fork do not mix
        config.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
      sass = dict(zip(compile_jobs, pool.map(_sass_hash, *zip(*compile_jobs.values()))))
    for entry in fingerprints.values():
      entry["sass"] = [sass[kernel] for kernel in entry["kernels"]]
  out = common.output_dir(config, "kernel_fingerprint")
  common.write_json(out / "fingerprints.json", dict(config=config.to_dict(),
                                                    fingerprints=fingerprints))
  if config.compare:
    compare(json.loads(earlier.read_text()), fingerprints)
  print(f"wrote {out}")


def compare(before: dict, now: dict) -> None:
  """Prints, for the cases both runs have, which parts changed."""
  before = before["fingerprints"]
  shared = [name for name in now if name in before]
  for part in ("kernels", "wrapper", "sass"):
    if all(part in before[name] and part in now[name] for name in shared):
      changed = [name for name in shared if before[name][part] != now[name][part]]
      print(f"{part}: {len(shared) - len(changed)} of {len(shared)} cases unchanged"
            + (f"; changed: {', '.join(changed[:8])}" + (" ..." if len(changed) > 8 else "")
               if changed else ""))
  if len(shared) < len(now):
    print(f"{len(now) - len(shared)} cases only in this run")


if __name__ == "__main__":
  app.run(main)
