"""Our Pallas kernels compiled for an H100 (sm_90) on any machine, GPU or not: lowered to Triton
IR by JAX, then compiled to a cubin and disassembled by the triton package (``pip install -e
'.[sass]'``). `experiments.kernel_sass` counts the disassembly's instructions and
`experiments.kernel_fingerprint` hashes it; `experiments.step_kernels` lowers a whole decode step.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import subprocess
from unittest import mock

import jax
from absl import app


def require_triton(what: str) -> None:
  """A one-line usage error unless the triton package (which compiles the kernels' Triton IR to
  SASS here, without a GPU) imports."""
  try:
    import triton  # noqa: F401, PLC0415
    from triton.backends.compiler import GPUTarget  # noqa: F401, PLC0415
  except ImportError:
    raise app.UsageError(f"{what} needs the triton package: pip install triton==3.6.0") from None


@contextlib.contextmanager
def compiling_for_hopper():
  """Lowers Pallas kernels for an H100 (sm_90) whatever this machine has: the Triton lowering
  asks the local GPU for its version, and here there may be none."""
  from jax._src.pallas.triton import gpu_info, pallas_call_registration  # noqa: PLC0415

  h100 = gpu_info.get_gpu_info_from_version(gpu_info.GpuVersion.H100)
  with mock.patch.object(pallas_call_registration.gpu_info_lib, "get_gpu_info", lambda: h100):
    yield


def lower_pallas_for_hopper(fn, *args):
  """``fn`` (any jax function of Pallas calls) traced at ``args`` (arrays or
  ShapeDtypeStructs) and lowered for an H100 -> (the Triton IR of each Pallas kernel it
  launches, without debug info; the StableHLO text of the whole)."""
  from jax._src.pallas.triton import pallas_call_registration  # noqa: PLC0415

  lowering = pallas_call_registration.lowering
  lower_module, kernels = lowering.lower_jaxpr_to_triton_module, []

  def capture(*lowering_args, **lowering_kwargs):  # records each kernel as it is lowered
    result = lower_module(*lowering_args, **lowering_kwargs)
    kernels.append(result.module.operation.get_asm(enable_debug_info=False))
    return result

  with compiling_for_hopper(), mock.patch.object(lowering, "lower_jaxpr_to_triton_module",
                                                  capture):
    lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
  return kernels, lowered.as_text(debug_info=False)


def lower_for_hopper(shape, rows: int, row_experts: bool, kernel_config):
  """The grouped matmul of ``shape`` (E, K, N, activation) at P = ``rows``, with group sizes or
  one tile a row (``row_experts``: a decode step's rows), lowered for an H100 -> (the Triton IR
  of each kernel it launches, without debug info; the wrapper's StableHLO text)."""
  import jax.numpy as jnp  # noqa: PLC0415

  from experiments.kernel_problems import model_out_dtype  # noqa: PLC0415
  from mxfp4_jax.kernels.pallas_grouped import grouped_matmul_pallas  # noqa: PLC0415
  from mxfp4_jax.kernels.swiglu import SWIGLU_ALPHA, SWIGLU_LIMIT  # noqa: PLC0415
  from mxfp4_jax.mxfp4.layout import PackedMXFP4, packed_shapes  # noqa: PLC0415

  num_experts, k, n, activation = shape
  sds = jax.ShapeDtypeStruct
  shapes = packed_shapes(num_experts, k, n)
  w = PackedMXFP4(values=sds(shapes["values"], jnp.uint8), scales=sds(shapes["scales"], jnp.uint8),
                  bias=sds((num_experts, n), jnp.float32), in_features=k,
                  swiglu_halves=activation == "swiglu")
  row_weights = None if activation else sds((rows,), jnp.float32)
  groups = (None, sds((rows,), jnp.int32)) if row_experts else (sds((num_experts,), jnp.int32),
                                                                 None)
  call = lambda x, w, r, groups: grouped_matmul_pallas(
      x, w, groups[0], r, groups[1], cfg=kernel_config, activation=activation,
      out_dtype=model_out_dtype(activation), interpret=False, swiglu_alpha=SWIGLU_ALPHA,
      swiglu_limit=SWIGLU_LIMIT)
  return lower_pallas_for_hopper(call, sds((rows, k), jnp.bfloat16), w, row_weights, groups)


def compile_sm90(ttir: str, num_warps: int, num_stages: int, folder: pathlib.Path):
  """One kernel's Triton IR (`lower_pallas_for_hopper`'s) compiled by Triton for sm_90, its IR
  and cubin written to ``folder`` (kernel.ttir, kernel.cubin) -> Triton's compiled kernel (its
  ``asm`` and ``metadata``)."""
  import triton  # noqa: PLC0415
  from triton.backends.compiler import GPUTarget  # noqa: PLC0415

  source = folder / "kernel.ttir"
  source.write_text(ttir)
  compiled = triton.compile(str(source), target=GPUTarget("cuda", 90, 32),
                            options=dict(num_warps=num_warps, num_stages=num_stages))
  (folder / "kernel.cubin").write_bytes(compiled.asm["cubin"])
  return compiled


def _cuda_tool(name: str) -> str:
  """A CUDA binary tool: the one on the PATH, or the one the triton package brings."""
  import triton  # noqa: PLC0415

  return shutil.which(name) or str(next(iter(triton.__path__)) + f"/backends/nvidia/bin/{name}")


def cuobjdump(*args: str) -> str:
  """The CUDA disassembler's output for ``args`` (e.g. ``"-sass", cubin``)."""
  return subprocess.run([_cuda_tool("cuobjdump"), *map(str, args)], check=True,
                        capture_output=True, text=True).stdout


def wgmma_serialized(ptx: str, folder: pathlib.Path) -> str | None:
  """Why ptxas serializes a kernel's wgmmas, or None if it does not. ptxas says so only as a
  "Potential Performance Loss" note under ``-v`` (C7515 and its kin, e.g. when a path defines an
  accumulator register while a wgmma may still be in flight): each wgmma then waits for the one
  before, and the tensor cores sit idle while the warps decode. ``ptx`` is compiled again by
  itself, with the PTX assembler the triton package brings, into ``folder``."""
  source = folder / "kernel.ptx"
  source.write_text(ptx)
  log = subprocess.run([_cuda_tool("ptxas"), "-v", "-arch=sm_90a", str(source), "-o",
                        str(folder / "ptxas.cubin")], check=True, capture_output=True,
                       text=True).stderr
  notes = [line.split("Potential Performance Loss:", 1)[1].strip()
           for line in log.splitlines() if "Potential Performance Loss: wgmma" in line]
  return "; ".join(notes) or None
