"""End-to-end speed of GPT-OSS: decode throughput by batch, prefill throughput, compile time,
peak memory, each beside its roofline.

  python -m experiments.bench_e2e --config=configs/gpt_oss_20b.py
  python -m experiments.bench_e2e --config=configs/gpt_oss_120b.py
  python -m experiments.bench_e2e --config=configs/tiny.py          # seconds on a CPU

Without ``--config.checkpoint`` the weights are random, of the real shapes, generated on the
device in the packed layout (speed does not depend on their values; routing of random weights
spreads tokens over experts much as trained routers do). Decode roofline: HBM bytes a step must
read (`benchmarking.decode_step_bytes`); prefill roofline: matmul FLOPs at the bf16 ceiling, or
where slower the weights it must read (`benchmarking.prefill_bytes`: 120b's 1k prefill reads
all of its 61 GB of experts).
Each figure is the median of ``--config.bench.timed_runs`` runs after an untimed one (the
lower middle of an even count, so that it is a run that happened; the printed range is
theirs). Warm start: set ``--config.bench.compilation_cache_dir`` and run twice.
``--config.bench.kernel_options=prefetch=2``: KernelConfig fields replaced in every tuned
config the model's grouped matmuls pick (as ``bench_kernel --config.kernel_options``); options
that change the experts' results are refused before anything is timed.
"""

from __future__ import annotations

import gc
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from flax import nnx

from experiments import common
from mxfp4_jax import benchmarking
from mxfp4_jax.device_memory import DeviceMemoryError, out_of_device_memory
from mxfp4_jax.generate.engine import Generator
from mxfp4_jax.generate.sampling import SamplingParams
from mxfp4_jax.kernels import grouped_matmul, tuning
from mxfp4_jax.kernels.reference import expert_of_row
from mxfp4_jax.model import GptOss

_CONFIG = common.define_config("gpt_oss_20b.py")
GREEDY = SamplingParams(temperature=0)
# Kernel options may change the order of the float32 sums, so the bf16 outputs differ by a few
# roundings (~1e-3); a wrong decode differs by ~1.
MAX_OPTION_REL_ERR = 1e-2


# Off a GPU the model runs at CPU speed, for a check of the code: past this many bytes of
# weights (the real shapes: 13 GB and more) it would take hours to time, if it fit at all.
OFF_GPU_WEIGHT_BYTES = 1e9


def _check_size_off_gpu(cfg) -> None:
  if jax.default_backend() == "gpu":
    return
  abstract = nnx.state(nnx.eval_shape(lambda: GptOss(cfg, rngs=nnx.Rngs(0))))
  nbytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(abstract))
  if nbytes > OFF_GPU_WEIGHT_BYTES:
    raise app.UsageError(f"--config: {nbytes / 1e9:.1f} GB of weights: timing the real shapes "
                         f"is for a GPU only; on {jax.default_backend()}, "
                         "--config=configs/tiny.py")


def _build(config):
  if config.checkpoint:
    return common.load_checkpoint(config.checkpoint, "--config.checkpoint", config.model)
  return GptOss(common.model_config(config.model), rngs=nnx.Rngs(config.seed))


def _experts(model, x, group_sizes, row_experts, row_weights):
  """The first layer's two grouped matmuls on ``x`` [P, D]: (gate_up's SwiGLU [P, I], down's
  [P, D] with the row weights)."""
  cfg, moe = model.cfg, model.layers[0].mlp
  routing = dict(row_experts=row_experts, backend="pallas", interpret=cfg.moe_interpret)
  h = grouped_matmul(x, moe.gate_up.get_value(), group_sizes, activation="swiglu",
                     swiglu_alpha=cfg.swiglu_alpha, swiglu_limit=cfg.swiglu_limit, **routing)
  return h, grouped_matmul(h, moe.down.get_value(), group_sizes, row_weights,
                           out_dtype=jnp.float32, **routing)


def check_kernel_options(model, bench, options: dict) -> None:
  """Kernel options change how the grouped matmuls run, not what they compute: the first
  layer's experts run the rows of each decode step and each prompt this benchmark times (not
  the untimed prefill calls that fill a decode batch's caches), the way the model routes them
  (one-row tiles or groups), with the options and with the tuned defaults (which the GPU tests
  check against float64). A difference past `MAX_OPTION_REL_ERR` is a usage error."""
  if not options:
    return
  cfg = model.cfg
  key = jax.random.PRNGKey(0)
  for tokens in sorted({*common.csv_list(bench.batch_sizes, int),
                        *common.csv_list(bench.prefill_lengths, int)}):
    key, k_route, k_x, k_weights = jax.random.split(key, 4)
    rows = tokens * cfg.experts_per_token
    group_sizes = benchmarking.random_routing(k_route, rows, cfg.num_experts,
                                              cfg.experts_per_token)
    row_experts = None
    if cfg.moe_one_row_tiles(tokens):
      row_experts = expert_of_row(group_sizes, rows)
      group_sizes = None
    args = (model, jax.random.normal(k_x, (rows, cfg.hidden_size), jnp.bfloat16), group_sizes,
            row_experts, jax.random.uniform(k_weights, (rows,), jnp.float32))
    with tuning.overridden(**options):
      tried = _experts(*args)
    for name, out, default in zip(("gate_up", "down"), tried, _experts(*args)):
      err = benchmarking.relative_error(out, default)
      if not err <= MAX_OPTION_REL_ERR:
        raise app.UsageError(
            f"--config.bench.kernel_options={bench.kernel_options!r}: {name} of {tokens} tokens "
            f"({rows} rows) differs from the tuned kernel by {err:.2e} (relative), past "
            f"{MAX_OPTION_REL_ERR}")
  print(f"kernel options {bench.kernel_options!r}: the experts' results match the tuned "
        "kernel's", flush=True)


def _decode(model, bench, batch: int, rng, compiler_options: dict) -> dict:
  cfg = model.cfg
  prefill = {} if bench.prefill_tokens is None else dict(prefill_tokens=bench.prefill_tokens)
  generator = Generator(model, max_len=bench.context + bench.decode_steps + 1,
                        chunk=bench.decode_steps, decode_compiler_options=compiler_options,
                        **prefill)
  prompts = rng.integers(0, cfg.vocab_size, (batch, bench.context)).tolist()
  # The first run compiles, and its first execution also loads kernels and builds CUDA graphs:
  # only the runs after it are timed.
  run = lambda trace=None: generator.generate(
      prompts, max_new_tokens=1 + bench.decode_steps, params=GREEDY, trace=trace)
  compile_s = run().stats.compile_s
  runs = [run().stats for _ in range(bench.timed_runs)]
  if bench.profile_dir:  # one more run, its decode steps (one chunk) traced
    run(trace=(0, lambda: _profiler(bench, f"decode_batch{batch}")))
  rates = [r.decode_tokens_per_s for r in runs]
  stats = runs[_median_index(rates)]
  step_bytes = sum(benchmarking.decode_step_bytes(
      cfg, batch, bench.context + bench.decode_steps // 2).values())
  roofline = batch / (step_bytes / bench.hbm_bytes_per_s)
  return dict(kind="decode", batch=batch, context=bench.context,
              tokens_per_s=stats.decode_tokens_per_s, roofline_tokens_per_s=roofline,
              fraction_of_roofline=stats.decode_tokens_per_s / roofline,
              runs_tokens_per_s=rates,
              step_ms=1e3 * stats.decode_s / bench.decode_steps, bytes_per_step=step_bytes,
              compile_s=compile_s, time_to_first_token_s=stats.prefill_s)


def _profiler(bench, name: str):
  """A `jax.profiler` trace into ``bench.profile_dir``/``name`` (read it with
  `experiments.trace_summary`)."""
  return jax.profiler.trace(f"{bench.profile_dir}/{name}", create_perfetto_trace=True)


def _median_index(values: list[float]) -> int:
  """The index of the median (the lower middle of an even count): a run that happened."""
  return sorted(range(len(values)), key=values.__getitem__)[(len(values) - 1) // 2]


def _prefill(model, bench, length: int, rng) -> dict:
  cfg = model.cfg
  generator = Generator(model, max_len=length + 1)
  prompt = rng.integers(0, cfg.vocab_size, (1, length)).tolist()
  run = lambda: generator.generate(prompt, max_new_tokens=1, params=GREEDY)
  run()  # compile, first run
  runs = [run().stats.prefill_tokens_per_s for _ in range(bench.timed_runs)]
  if bench.profile_dir:  # one more run, traced
    with _profiler(bench, f"prefill{length}"):
      run()
  tokens_per_s = runs[_median_index(runs)]
  flops_s = benchmarking.prefill_flops(cfg, length) / bench.bf16_flops_per_s
  bytes_s = benchmarking.prefill_bytes(cfg, length) / bench.hbm_bytes_per_s
  roofline = length / max(flops_s, bytes_s)
  return dict(kind="prefill", batch=1, context=length, tokens_per_s=tokens_per_s,
              roofline_tokens_per_s=roofline, fraction_of_roofline=tokens_per_s / roofline,
              roofline_bound="hbm" if bytes_s > flops_s else "flops", runs_tokens_per_s=runs)


def _within_memory(case, kind: str, batch: int, context: int) -> dict:
  """``case()``'s row, or, where the device runs out of memory for it (a batch or a prefill
  call too large beside the weights), a row that says so: the cases after it still run."""
  try:
    return case()
  except (jax.errors.JaxRuntimeError, DeviceMemoryError) as e:
    if not out_of_device_memory(e):
      raise
    # A Generator's error names the phase and its sizes; XLA's is prefixed here.
    error = common.first_line(e)[:400]
    if not isinstance(e, DeviceMemoryError):
      error = f"out of device memory: {error}"
  gc.collect()  # the failed case's buffers, held by the traceback until here
  return dict(kind=kind, batch=batch, context=context, error=error)


def _cases(model, bench, rng, decode_options: dict) -> list[dict]:
  rows = []
  for batch in common.csv_list(bench.batch_sizes, int):
    rows.append(_within_memory(lambda: _decode(model, bench, batch, rng, decode_options),
                               "decode", batch, bench.context))
    _print_row(rows[-1])
  for length in common.csv_list(bench.prefill_lengths, int):
    rows.append(_within_memory(lambda: _prefill(model, bench, length, rng), "prefill", 1, length))
    _print_row(rows[-1])
  return rows


def _plot(rows: list[dict], path) -> None:
  decode = [r for r in rows if r["kind"] == "decode" and "error" not in r]
  if not decode:  # a prefill-only run has no decode curve (and log axes cannot take none)
    return
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot([r["batch"] for r in decode], [r["tokens_per_s"] for r in decode], "o-", label="measured")
  ax.plot([r["batch"] for r in decode], [r["roofline_tokens_per_s"] for r in decode], "x--",
          label="HBM roofline")
  ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="decode tokens / s")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def _print_row(r: dict) -> None:
  case = f"{r['kind']:>7} batch {r['batch']:>4} context {r['context']:>6}: "
  if "error" in r:
    print(case + r["error"], flush=True)
    return
  runs = r["runs_tokens_per_s"]
  print(case + f"{r['tokens_per_s']:>12,.1f} tok/s | roofline {r['roofline_tokens_per_s']:>12,.1f} "
        f"({r['fraction_of_roofline']:.1%}"
        + (", weight reads)" if r.get("roofline_bound") == "hbm" else ")")
        + (f" | step {r['step_ms']:.2f} ms | compile {r['compile_s']:.1f} s | first token "
           f"{r['time_to_first_token_s']:.2f} s" if r["kind"] == "decode" else "")
        + f" | {'median' if len(runs) % 2 else 'lower middle'} of {len(runs)}, "
        f"{min(runs):,.1f}-{max(runs):,.1f}", flush=True)


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  bench = config.bench
  common.positive_pair(bench, ("batch_sizes", "prefill_lengths"), "--config.bench.")
  common.seed("--config.seed", config.seed)
  for name in ("context", "decode_steps", "timed_runs"):
    common.positive(f"--config.bench.{name}", bench[name])
  if bench.prefill_tokens is not None:
    common.positive("--config.bench.prefill_tokens", bench.prefill_tokens)
  # Before anything starts the GPU backend (resolving the MoE backend below does).
  common.gpu_memory_fraction(bench.gpu_memory_fraction, "--config.bench.gpu_memory_fraction")
  cfg = (common.checkpoint_config(config.checkpoint, "--config.checkpoint", config.model)
         if config.checkpoint else common.model_config(config.model))
  common.check_kernels_run_here(cfg)
  _check_size_off_gpu(cfg)
  if bench.batch_sizes:
    common.within_context("--config.bench.context and decode_steps",
                          bench.context + bench.decode_steps + 1, cfg)
  for length in common.csv_list(bench.prefill_lengths, int):
    common.within_context("--config.bench.prefill_lengths", length + 1, cfg)
  # Kernel options apply while the generators trace (and so compile) the model.
  options = common.kernel_options(bench.kernel_options, "--config.bench.kernel_options")
  decode_options = common.compiler_options(bench.decode_compiler_options,
                                           "--config.bench.decode_compiler_options")
  if options and cfg.resolved_moe_backend != "pallas":
    raise app.UsageError(f"--config.bench.kernel_options: the experts run the "
                         f"{cfg.resolved_moe_backend!r} backend here, not the Pallas kernel that "
                         "the options tune")
  if bench.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", bench.compilation_cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  bench.hbm_bytes_per_s, bench.bf16_flops_per_s = common.ceilings(
      bench.hbm_bytes_per_s, bench.bf16_flops_per_s, flag_prefix="--config.bench.")
  start = time.perf_counter()
  model = _build(config)
  state = jax.block_until_ready(nnx.state(model))
  build_s = time.perf_counter() - start
  cfg = model.cfg
  weight_bytes = sum(a.nbytes for a in jax.tree.leaves(state))
  print(f"{'checkpoint ' + config.checkpoint if config.checkpoint else 'random weights'}: "
        f"{cfg.num_layers} layers, {cfg.num_experts} experts, {weight_bytes / 2**30:.2f} GiB of "
        f"weights, built in {build_s:.1f} s on {common.device_description()}", flush=True)

  rng = np.random.default_rng(config.seed)
  check_kernel_options(model, bench, options)
  with tuning.overridden(**options):
    rows = _cases(model, bench, rng, decode_options)
  peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
  failed = " (a case that ran out of memory included)" if any("error" in r for r in rows) else ""
  print(f"peak device memory: {peak / 2**30:.2f} GiB{failed}" if peak
        else "peak device memory: n/a")

  out = common.output_dir(bench, "bench_e2e")
  common.write_json(out / "results.json", dict(
      device=common.device_description(), config=config.to_dict(), build_s=build_s,
      weight_bytes=weight_bytes, peak_memory_bytes=peak, results=rows))
  _plot(rows, out / "decode.png")
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
