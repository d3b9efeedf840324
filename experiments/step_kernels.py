"""The kernels of one GPT-OSS decode step on a Hopper GPU, compiled without a GPU.

  python -m experiments.step_kernels --config=configs/step_kernels.py

XLA compiles the generator's decode loop for the GPU described by ``config.target`` (a
GpuTargetConfigProto); the loop body of the optimized HLO holds one instruction per kernel a
step launches (a fusion, a custom call such as a Pallas kernel or a cuBLAS matmul, a copy).
Printed with each kernel's output shape and the jnp operation it came from; the HLO is written
beside it. A change meant to remove kernels is checked here before the GPU times it.
"""

from __future__ import annotations

import re
from unittest import mock

import jax
import jax.numpy as jnp
from absl import app
from flax import nnx
from jax.sharding import SingleDeviceSharding

from experiments import common, hopper
from mxfp4_jax.generate.engine import Generator
from mxfp4_jax.generate.sampling import SamplingParams
from mxfp4_jax.kernels import tuning
from mxfp4_jax.model import GptOss

_NOT_KERNELS = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant"}
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%([\w.\-]+) = (.+?) ([a-z][\w\-]*)\(")


def loop_body_kernels(hlo: str) -> list[dict]:
  """The kernels of the first while loop's body in optimized HLO text: one dict per instruction
  that launches work (op, name, shape, custom-call target, source jnp op)."""
  body = re.search(r"while\(.*?body=%([\w.\-]+)", hlo)
  if body is None:
    raise ValueError("no while loop in the HLO")
  start = hlo.index(f"\n%{body.group(1)} ") + 1
  kernels = []
  for line in hlo[start:hlo.index("\n}", start)].splitlines()[1:]:
    match = _INSTRUCTION.match(line)
    if not match or match.group(3) in _NOT_KERNELS:
      continue
    target = re.search(r'custom_call_target="([^"]+)"', line)
    source = re.search(r'op_name="([^"]+)"', line)
    kernels.append(dict(op=match.group(3), name=match.group(1), shape=match.group(2),
                        target=target.group(1) if target else "",
                        source=source.group(1).rpartition("eval_jaxpr/")[2] if source else ""))
  return kernels


def compile_decode_loop(config, device) -> str:
  """Optimized HLO of `Generator`'s decode loop for ``device`` (a compile-only device)."""
  cfg = common.model_config(config.model)
  model = nnx.eval_shape(lambda: GptOss(cfg, rngs=nnx.Rngs(0)))  # shapes only, no weights
  max_len = config.context + config.steps + 1
  generator = Generator(model, max_len=max_len, chunk=config.steps)
  sharding = SingleDeviceSharding(device)
  on_device = lambda tree: jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)
  rows = lambda dtype: jax.ShapeDtypeStruct((config.batch,), dtype, sharding=sharding)
  args = (on_device(generator.state),
          on_device(jax.eval_shape(lambda: model.init_cache(config.batch, max_len))),
          rows(jnp.int32), rows(jnp.int32), rows(jnp.bool_),
          jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding),
          jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=sharding))
  # The model picks its GPU kernels by the default backend, which is this machine's.
  with hopper.compiling_for_hopper(), mock.patch("jax.default_backend", return_value="gpu"):
    lowered = generator.decode_loop(config.batch).trace(
        *args, steps=config.steps, params=SamplingParams(temperature=0)).lower(
            lowering_platforms=("cuda",))
  return lowered.compile().as_text()


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  for name in ("batch", "context", "steps"):
    common.positive(f"--config.{name}", config[name])
  common.within_context("--config.context and steps", config.context + config.steps + 1,
                        common.model_config(config.model))
  options = common.kernel_options(config.kernel_options)
  from jax.experimental import topologies  # noqa: PLC0415

  # The compile-only device stands for the GPU; a GPU backend on this machine (if any) is not
  # used, and without a GPU its failed start would also drop the CUDA compiler.
  jax.config.update("jax_platforms", "cpu")
  target_path = common.REPO / config.target
  if not target_path.is_file():
    raise app.UsageError(f"--config.target: no GPU target file {target_path}")
  target = target_path.read_text()
  try:
    device = topologies.get_topology_desc(platform="cuda", target_config=target,
                                          topology="1x1x1").devices[0]
  except (NotImplementedError, RuntimeError) as e:
    raise app.UsageError(f"compiling for a GPU needs XLA's CUDA plugin (pip install -e "
                         f"'.[cuda13]'): {common.first_line(e)}") from None
  with tuning.overridden(**options):
    hlo = compile_decode_loop(config, device)
  kernels = loop_body_kernels(hlo)
  out = common.output_dir(config, "step_kernels")
  (out / "decode_loop.hlo.txt").write_text(hlo)
  lines = [f"{k['op']:<12} {k['name']:<36} {k['shape'][:48]:<48} {k['target'] or k['source']}"
           for k in kernels]
  summary = (f"{len(kernels)} kernels a decode step: {config.model.num_layers} layers, batch "
             f"{config.batch}, compiled for {device.device_kind}")
  (out / "kernels.txt").write_text("\n".join(lines + [summary]) + "\n")
  print("\n".join(lines))
  print(summary)
  print(f"wrote {out}")


if __name__ == "__main__":
  # Defined only when run, so that tests can import the parser beside another experiment.
  _CONFIG = common.define_config("step_kernels.py")
  app.run(main)
