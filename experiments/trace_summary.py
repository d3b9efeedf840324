"""Where the device time goes in a `jax.profiler` trace: GPU kernel time by kernel, then by fusion.

  python -m experiments.generate --config=configs/generate.py:gpt_oss_20b \
      --profile_dir=results/trace
  python -m experiments.trace_summary --trace=results/trace --steps=16

Reads the ``perfetto_trace.json.gz`` that ``jax.profiler.trace(create_perfetto_trace=True)``
writes. "busy" is the union of kernel intervals on the GPU's streams, "span" the first kernel's
start to the latest end: a span much longer than busy means the GPU waited (launch gaps,
host syncs). ``--steps`` divides every figure but the idle gaps' (whole trace) by the decode steps the trace
covers. The second
table keeps each fusion apart by its kernel's own name (the router's ``input_reduce_fusion_7``
is not the norms' ``input_reduce_fusion_4``), as the optimized HLO that
``experiments.step_kernels`` lists names them; fusions that XLA compiled to one kernel share a
row. (The trace's ``hlo_op`` does not tell them apart: a decode step runs as one XLA command
buffer, a CUDA graph, and every kernel in it carries the buffer's name.)
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re

from absl import app, flags

_TRACE = flags.DEFINE_string("trace", None, "A trace directory (searched for "
                             "perfetto_trace.json.gz) or the file itself.", required=True)
_STEPS = flags.DEFINE_integer("steps", 1, "Decode steps in the trace: figures are per step.")
_TOP = flags.DEFINE_integer("top", 25, "Rows per table.")


def find_trace(path: str | pathlib.Path) -> pathlib.Path:
  path = pathlib.Path(path)
  if path.is_file():
    return path
  found = sorted(path.rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
  if not found:
    raise FileNotFoundError(f"--trace={path}: no perfetto_trace.json.gz under it")
  return found[-1]


def device_kernels(trace: dict) -> list[dict]:
  """Complete events ("X") on the GPU's streams: the kernels and copies. Other lines of a GPU
  process ("XLA Ops", "XLA Modules", name scopes) repeat the same time and are left out."""
  meta = [e for e in trace["traceEvents"] if e.get("ph") == "M"]
  gpu_pids = {e["pid"] for e in meta if e.get("name") == "process_name"
              and re.search(r"GPU|gpu", str(e.get("args", {}).get("name", "")))}
  streams = {(e["pid"], e.get("tid")) for e in meta if e.get("name") == "thread_name"
             and e["pid"] in gpu_pids and str(e["args"].get("name", "")).startswith("Stream")}
  return [e for e in trace["traceEvents"]
          if e.get("ph") == "X" and "dur" in e and (e.get("pid"), e.get("tid")) in streams]


def busy_and_span_us(events: list[dict]) -> tuple[float, float]:
  intervals = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events)
  if not intervals:
    return 0.0, 0.0
  busy, (start, end) = 0.0, intervals[0]
  for s, e in intervals[1:]:
    if s > end:
      busy, start = busy + end - start, s
    end = max(end, e)
  busy += end - start
  return busy, end - intervals[0][0]  # the latest end, which the last to start may not be


def idle_gaps(events: list[dict], top: int) -> list[str]:
  """The ``top`` longest stretches with no kernel on any stream: when (from the first
  kernel's start) and between which kernels. Launch gaps and host syncs show up here."""
  ordered = sorted(events, key=lambda e: float(e["ts"]))
  first, gaps = float(ordered[0]["ts"]), []
  last = ordered[0]
  for e in ordered[1:]:
    end = float(last["ts"]) + float(last["dur"])
    if float(e["ts"]) > end:
      gaps.append((float(e["ts"]) - end, end - first, last["name"], e["name"]))
    if float(e["ts"]) + float(e["dur"]) > end:
      last = e
  lines = [f"{'idle us':>9} {'at us':>9}  after -> before"]
  for us, at, before, after in sorted(gaps, reverse=True)[:top]:
    lines.append(f"{us:9.1f} {at:9.1f}  {before[:50]} -> {after[:50]}")
  return lines


def kernel_name(event: dict) -> str:
  return re.sub(r"[._]\d+$", "", re.sub(r"\.\d+", "", event["name"]))


def table(events: list[dict], key, steps: int, top: int) -> list[str]:
  total, count = collections.Counter(), collections.Counter()
  for e in events:
    total[key(e)] += float(e["dur"])
    count[key(e)] += 1
  all_us = sum(total.values()) or 1.0
  lines = [f"{'us/step':>9} {'share':>6} {'calls/step':>10}  name"]
  for name, us in total.most_common(top):
    lines.append(f"{us / steps:9.1f} {us / all_us:6.1%} {count[name] / steps:10.1f}  {name[:110]}")
  return lines


def summarize(path, steps: int = 1, top: int = 25) -> str:
  found = find_trace(path)
  try:
    with gzip.open(found, "rt") as f:
      trace = json.load(f)
  except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"--trace={path}: {found} is not a gzipped JSON trace ({e})") from None
  if not (isinstance(trace, dict) and isinstance(trace.get("traceEvents"), list)):
    raise ValueError(f"--trace={path}: {found} is not a gzipped JSON trace (no traceEvents list)")
  events = device_kernels(trace)
  if not events:
    raise ValueError(f"--trace={path}: no GPU events in the trace")
  busy, span = busy_and_span_us(events)
  lines = [f"{len(events) / steps:.1f} GPU events/step | busy {busy / steps:.1f} us/step | span "
           f"{span / steps:.1f} us/step | idle {1 - busy / span if span else 0:.1%}",
           "", "by kernel:", *table(events, kernel_name, steps, top),
           "", "by fusion:", *table(events, lambda e: e["name"], steps, top),
           "", "longest idle gaps (whole trace):", *idle_gaps(events, top),
           "", f"args of one event: {sorted(events[0].get('args', {}))}"]
  return "\n".join(lines)


def main(argv) -> None:
  del argv
  for flag in (_STEPS, _TOP):
    if flag.value < 1:
      raise app.UsageError(f"--{flag.name} must be >= 1, got {flag.value}")
  try:
    print(summarize(_TRACE.value, _STEPS.value, _TOP.value))
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e)) from None


if __name__ == "__main__":
  app.run(main)
