"""A candidate weight layout for decode-size tiles, timed against the kernel's current one.

  python -m experiments.layout_probe --config=configs/layout_probe.py

The current layout (`mxfp4_jax.mxfp4.layout`) puts a K tile's low nibbles under one scale and
its high nibbles under the next; each thread loads 16 contiguous bytes and warp shuffles move
them into the wgmma operand's registers, and the decode spreads bytes with `prmt` before
shifting nibbles into place (sm_90 disassembly: ~186 instructions a thread per 64x64 block).

The candidate keeps the checkpoint's nibble pairs (a byte holds K values 2j and 2j + 1, so
one table lookup gives a bf16x2 register of the operand as is) and orders each 16-row group's
512 bytes of a K tile by the thread that feeds them to the tensor core:
``[g 8][a 4][u 2][h 2][p 4]`` for row ``16 G + 8 h + g`` and K pair ``32 u + 8 p + 2 a``
(``a`` = lane % 4, ``g`` = lane / 4 of the wgmma register operand). A thread's 16 bytes are
one load already in operand order, and one dot covers the 64-value tile. Its scales: one
32-bit word per (group, g): bytes ``2 u + h``.

This probe runs the gate_up shape's decode path only (one tile per row, split K, raw float32
sums and the same jnp SwiGLU epilogue after both), checks it against a float64 decode of its
own layout, and times both kernels on the same routing with rotated weight copies.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from configs.bench_kernel import SHAPES
from experiments import common
from mxfp4_jax import benchmarking
from mxfp4_jax.kernels import pick_config
from mxfp4_jax.kernels.pallas_grouped import grouped_matmul_pallas
from mxfp4_jax.kernels.swiglu import SWIGLU_ALPHA, SWIGLU_LIMIT, swiglu
from mxfp4_jax.kernels.triton_ops import dot_accumulate, inline_asm
from mxfp4_jax.mxfp4 import format as fmt
from mxfp4_jax.mxfp4.layout import RANDOM_SCALE_RANGE, random_packed

_CONFIG = common.define_config("layout_probe.py")
GROUP_BYTES = 512  # one 16-row group of one 64-value K tile


def scale_factors(scale_words):
  """[G, 8] scale words -> [G, 8, 1, 2, 2] bf16x2 factors 2**(s - 127) of byte 2 u + h."""
  byte = (2 * lax.broadcasted_iota(jnp.uint32, (1, 1, 1, 2, 2), 3)
          + lax.broadcasted_iota(jnp.uint32, (1, 1, 1, 2, 2), 4))
  scales = (scale_words.reshape(scale_words.shape[0], 8, 1, 1, 1) >> (8 * byte)) & 0xFF
  return fmt.scale_bf16x2_bits(scales)


def assemble_operand(halves):
  """The decode's 8 outputs, each [G, g, a, u, h] (``2 p + q``: byte p, nibble q) -> the
  [16 G, 64] operand, rows (G, h, g) and K (u, p, a, q)."""
  pairs = [jnp.stack([halves[2 * p], halves[2 * p + 1]], -1) for p in range(4)]
  quads = jnp.stack([jnp.stack(pairs[:2], -1), jnp.stack(pairs[2:], -1)], -1)
  # (G, g, a, u, h, q, p0, p1) -> rows (G, h, g), K (u, p1, p0, a, q)
  return quads.transpose(0, 4, 1, 3, 7, 6, 2, 5).reshape(halves[0].shape[0] * 16, 64)


def decode_block(words, scale_words, tables):
  """[bn/16, 128] uint32 words and [bn/16, 8] scale words -> the [bn, 64] bf16 operand."""
  words = words.reshape(words.shape[0], 8, 4, 2, 2)  # (G, g, a, u, h)
  factor = jnp.broadcast_to(scale_factors(scale_words), words.shape)
  tables = [t.reshape(words.shape) for t in tables]
  halves = inline_asm(fmt.e2m1_lut_ptx(pairs="bytes"), [words, factor, factor, *tables],
                      constraints=",".join(["=h"] * 8 + ["r"] * 6), pack=1,
                      result_shape_dtypes=[jax.ShapeDtypeStruct(words.shape, jnp.bfloat16)] * 8)
  return assemble_operand(halves)


def _kernel(experts_ref, x_ref, words_ref, scales_ref, tables_ref, out_ref, *, bn, half_rows,
            tiles_per_split, loads_first):
  row, col_tile, split = pl.program_id(0), pl.program_id(1), pl.program_id(2)
  expert = experts_ref[row]
  window = jnp.minimum(row, out_ref.shape[1] - 16)
  rows = window + lax.broadcasted_iota(jnp.int32, (16,), 0)
  rows_read = jnp.minimum(rows, x_ref.shape[0] - 1)
  tables = [tables_ref[i] for i in range(3)]
  blocks = (col_tile * bn // 16, (half_rows + col_tile * bn) // 16)  # glu, linear

  def loads(u):  # x's [16, 64] and each block's words and scale words for the split's tile u
    kt = split * tiles_per_split + u
    return (x_ref[rows_read, pl.ds(pl.multiple_of(kt * 64, 64), 64)],
            [(words_ref[expert, kt, pl.ds(g, bn // 16), :],
              scales_ref[expert, kt, pl.ds(g, bn // 16), :]) for g in blocks])

  tiles = [loads(u) for u in range(tiles_per_split)] if loads_first else None
  accs = [jnp.zeros((bn, 16), jnp.float32) for _ in blocks]
  for u in range(tiles_per_split):
    x, block_loads = tiles[u] if loads_first else loads(u)
    for i, (words, scales) in enumerate(block_loads):
      accs[i] = dot_accumulate(accs[i], decode_block(words, scales, tables), x, trans_b=True)
  mask = (rows == row)[:, None]
  for acc, group0 in zip(accs, blocks):
    pltriton.store(out_ref.at[split, pl.ds(window, 16), pl.ds(group0 * 16, bn)], acc.T, mask=mask)


@functools.partial(jax.jit, static_argnames=("splits", "loads_first"))
def probe_gate_up(x, words, scales, bias, row_experts, *, splits: int, loads_first: bool = False):
  """[P, K] bf16 -> [P, N/2] bf16 SwiGLU of the gate_up weights in the candidate layout."""
  num_rows = x.shape[0]
  num_experts, k_tiles, groups, _ = words.shape
  n, bn = groups * 16, 64
  tables = jnp.broadcast_to(jnp.array(fmt.LUT_REGISTERS, jnp.uint32)[:, None, None],
                            (3, bn // 16, 128))
  kernel = functools.partial(_kernel, bn=bn, half_rows=n // 2, tiles_per_split=k_tiles // splits,
                             loads_first=loads_first)
  sums = pl.pallas_call(
      kernel, grid=(num_rows, n // 2 // bn, splits),
      out_shape=jax.ShapeDtypeStruct((splits, max(num_rows, 16), n), jnp.float32),
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=4),
      name="layout_probe_gate_up",
  )(row_experts, x, words, scales, tables)
  out = sums.sum(axis=0)[:num_rows] + bias[row_experts]
  return swiglu(out[:, : n // 2], out[:, n // 2:], alpha=SWIGLU_ALPHA, limit=SWIGLU_LIMIT).astype(jnp.bfloat16)


def reference_dense(words, scales) -> np.ndarray:
  """float64 ``[E, K, N]`` weights of the candidate layout (``words [E, K/64, N/16, 128]``,
  ``scales [E, K/64, N/16, 8]``)."""
  words, scales = np.asarray(words), np.asarray(scales)
  w = words.view(np.uint8).reshape(*words.shape[:3], 8, 4, 2, 2, 4)  # E t G g a u h p
  values = fmt.E2M1_VALUES[np.stack([w & 0xF, w >> 4], axis=-1)].astype(np.float64)  # ... p q
  s = scales.view(np.uint8).reshape(*scales.shape[:3], 8, 2, 2)  # E t G g u h
  values *= np.exp2(s.astype(np.float64) - 127)[:, :, :, :, None, :, :, None, None]
  # E t G g a u h p q -> E (t u p a q) = K, (G h g) = N
  return values.transpose(0, 1, 5, 7, 4, 8, 2, 6, 3).reshape(
      words.shape[0], words.shape[1] * 64, words.shape[2] * 16)


def reference(x, words, scales, bias, row_experts) -> np.ndarray:
  """float64: the candidate layout decoded, then the same matmul and SwiGLU."""
  experts = np.asarray(row_experts)
  out = np.einsum("pk,pkn->pn", np.asarray(x, np.float64), reference_dense(words, scales)[experts])
  out += np.asarray(bias, np.float64)[experts]
  n = out.shape[1] // 2
  glu = np.minimum(out[:, :n], SWIGLU_LIMIT)
  lin = np.clip(out[:, n:], -SWIGLU_LIMIT, SWIGLU_LIMIT)
  return glu / (1 + np.exp(-SWIGLU_ALPHA * glu)) * (lin + 1)


def candidate_copy(key, num_experts, k, n):
  """Random codes and GPT-OSS-like scales in the candidate layout (speed ignores the values)."""
  kw, ks, kb = jax.random.split(key, 3)
  words = jax.random.bits(kw, (num_experts, k // 64, n // 16, GROUP_BYTES // 4), jnp.uint32)
  low, high = RANDOM_SCALE_RANGE
  scale_bytes = jax.random.randint(ks, (num_experts, k // 64, n // 16, 32), low, high + 1,
                                   jnp.uint32)
  scales = lax.bitcast_convert_type(scale_bytes.astype(jnp.uint8).reshape(
      num_experts, k // 64, n // 16, 8, 4), jnp.uint32)
  return words, scales, jax.random.normal(kb, (num_experts, n), jnp.float32) * 0.1


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  common.seed("--config.seed", config.seed)
  num_experts, k, n, activation = SHAPES[common.known_shapes("--config.shape", [config.shape])[0]]
  if activation != "swiglu":
    raise app.UsageError(f"--config.shape={config.shape}: the probe covers gate_up shapes only")
  rows_list = common.positive("--config.rows", config.rows)
  common.positive("--config.copies", config.copies)
  configs = {num_rows: pick_config(num_rows, num_experts, n // 2, k // 64, one_tile_per_row=True)
             for num_rows in rows_list}
  for num_rows, cfg in configs.items():  # the probe's splits are straight runs of equal length
    if (k // 64) % cfg.k_splits:
      raise app.UsageError(f"--config.rows={num_rows}: the tuned {cfg.k_splits} splits do not "
                           f"divide the {k // 64} K tiles, which the probe needs")
  common.require_gpu("layout_probe")
  key = jax.random.PRNGKey(config.seed)
  copies = config.copies
  keys = jax.random.split(key, 2 * copies + 2)
  candidates = [candidate_copy(keys[i], num_experts, k, n) for i in range(copies)]
  current = [random_packed(keys[copies + i], num_experts, k, n, swiglu_halves=True)
             for i in range(copies)]
  print(common.device_description())
  for num_rows in rows_list:
    kx, ke = jax.random.split(jax.random.fold_in(keys[-1], num_rows))
    x = jax.random.normal(kx, (num_rows, k), jnp.float32).astype(jnp.bfloat16)
    experts = jax.random.choice(ke, num_experts, (num_rows,), replace=num_rows > num_experts)
    cfg = configs[num_rows]
    splits = cfg.k_splits
    probe = functools.partial(probe_gate_up, splits=splits, loads_first=config.loads_first)
    words, scales, bias = candidates[0]
    out = np.asarray(probe(x, words, scales, bias, experts), np.float64)
    ref = reference(x, words, scales, bias, experts)
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    old = functools.partial(grouped_matmul_pallas, group_sizes=None, row_weights=None, cfg=cfg,
                            activation="swiglu", out_dtype=jnp.bfloat16, interpret=False,
                            swiglu_alpha=SWIGLU_ALPHA, swiglu_limit=SWIGLU_LIMIT)
    t_old = benchmarking.time_per_call(lambda x, w, e: old(x, w, row_experts=e),
                                       [(x, w, experts) for w in current], perturb=0)
    t_new = benchmarking.time_per_call(lambda x, w, s, b, e: probe(x, w, s, b, e),
                                       [(x, *c, experts) for c in candidates], perturb=0)
    weight_bytes = len(set(np.asarray(experts).tolist())) * current[0].expert_nbytes()
    print(f"P={num_rows} splits={splits} rel_err={rel:.2e} current {t_old * 1e3:.4f} ms "
          f"({weight_bytes / t_old / 1e12:.2f} TB/s) candidate {t_new * 1e3:.4f} ms "
          f"({weight_bytes / t_new / 1e12:.2f} TB/s) ratio {t_old / t_new:.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
