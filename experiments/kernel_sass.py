"""Instruction counts of the grouped matmul's K loop on sm_90, from the disassembly (no GPU).

  python -m experiments.kernel_sass --config=configs/kernel_sass.py
"""

from __future__ import annotations

import collections
import re

from absl import app

from configs.bench_kernel import SHAPES
from experiments import common, hopper
from mxfp4_jax.kernels import KernelConfig
from mxfp4_jax.mxfp4.layout import K_TILE

_CONFIG = common.define_config("kernel_sass.py")
_INSTRUCTION = re.compile(r"\s+/\*([0-9a-f]+)\*/\s+(.*?);")


def _opcodes(body: list[str]) -> dict[str, int]:
  counts = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0]
                               for t in body)
  return dict(counts.most_common())


def loop_stats(sass: str) -> tuple[dict, list[dict]]:
  """The whole kernel's instruction count and opcodes, and every backward branch's loop body's."""
  instructions = [(int(m.group(1), 16), m.group(2).strip())
                  for m in map(_INSTRUCTION.match, sass.splitlines()) if m]
  loops = []
  for address, text in instructions:
    target = re.search(r"BRA[^0-9]*0x([0-9a-f]+)", text)
    if target and int(target.group(1), 16) < address:
      body = [t for a, t in instructions if int(target.group(1), 16) <= a <= address]
      loops.append(dict(instructions=len(body), opcodes=_opcodes(body)))
  texts = [t for _, t in instructions if not t.startswith("NOP")]
  return dict(instructions=len(texts), opcodes=_opcodes(texts)), loops


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  common.known_shapes("--config.shape", [config.shape])
  common.positive("--config.rows", config.rows)
  # The KernelConfig fields the config names (the others keep their defaults).
  kernel_config = KernelConfig(**common.kernel_fields(config))
  hopper.require_triton("kernel_sass")

  out = common.output_dir(config, "kernel_sass")
  kernels, _ = hopper.lower_for_hopper(SHAPES[config.shape], config.rows, config.row_experts,
                                       kernel_config)
  compiled = hopper.compile_sm90(kernels[0], config.num_warps, config.num_stages, out)
  (out / "kernel.ttgir").write_text(compiled.asm["ttgir"])
  serialized = hopper.wgmma_serialized(compiled.asm["ptx"], out)  # writes kernel.ptx
  sass = hopper.cuobjdump("-sass", out / "kernel.cubin")
  (out / "kernel.sass").write_text(sass)
  usage = hopper.cuobjdump("--dump-resource-usage", out / "kernel.cubin")
  registers = int(re.search(r"REG:(\d+)", usage).group(1))

  activation = SHAPES[config.shape][3]
  # A dot a weight block: the output block's, and its linear half's unless paired with it.
  dots = 2 if activation and not kernel_config.paired_halves else 1
  weights_per_iteration = dots * config.block_n * K_TILE
  threads = 32 * config.num_warps
  # Registers bound the programs an SM holds (65,536 a SM, allocated 8 a thread at a time), and
  # with them the loads in flight.
  per_sm = 65536 // (threads * -(-registers // 8) * 8)
  print(f"{config.shape} P={config.rows} {kernel_config}: shared memory "
        f"{compiled.metadata.shared} bytes, {registers} registers a thread "
        f"(at most {per_sm} programs an SM by registers)")
  whole, loops = loop_stats(sass)
  print(f"kernel: {whole['instructions']} instructions (NOPs left out); "
        + ", ".join(f"{op} {count}" for op, count in list(whole["opcodes"].items())[:14])
        + "; " + ", ".join(f"{op} {whole['opcodes'].get(op, 0)}"
                           for op in ("BAR", "MEMBAR", "HGMMA", "FFMA", "LDG", "LDS", "STS")))
  for loop in loops:
    top = ", ".join(f"{op} {count}" for op, count in list(loop["opcodes"].items())[:10])
    # Every thread runs the loop body once per iteration; the program decodes
    # weights_per_iteration weights per iteration over `threads` threads.
    print(f"loop: {loop['instructions']} instructions per iteration = "
          f"{loop['instructions'] * threads / weights_per_iteration:.1f} per decoded weight; "
          f"HGMMA {loop['opcodes'].get('HGMMA', 0)}; {top}")
  print(f"wgmma serialized by ptxas: {serialized}" if serialized else
        "wgmma not serialized (ptxas -v has no note)")
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
