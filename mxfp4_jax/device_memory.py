"""The device running out of memory, as one line that says what ran out and what to lower,
instead of XLA's traceback from deep inside JAX."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import jax


class DeviceMemoryError(MemoryError):
  """The device ran out of memory: one line naming what ran out (a generation's phase and the
  sizes that set its memory), XLA's figures for one call, and what to lower."""


def out_of_device_memory(error: BaseException) -> bool:
  """Whether ``error`` is the device running out of memory: XLA's, or a `DeviceMemoryError`."""
  return isinstance(error, DeviceMemoryError) or (
      isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error))


@contextlib.contextmanager
def naming_out_of_memory(what: str, compiled: Callable[[], object], remedy: str):
  """XLA's out-of-memory error raised by a launch inside the block (a traceback from deep in
  JAX) as a `DeviceMemoryError` that says ``what`` ran out, with the memory figures of the
  executable ``compiled()`` returns (where there is one and it has them)."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if not out_of_device_memory(e):
      raise
    try:
      stats = compiled().memory_analysis()
    except Exception:  # noqa: BLE001 (no executable yet, or a backend without the figures)
      stats = None
    gib = 2**30
    needs = "" if stats is None else (
        f": a call holds {stats.argument_size_in_bytes / gib:.2f} GiB of weights, caches and "
        f"inputs and needs {stats.temp_size_in_bytes / gib:.2f} GiB more")
    xla = (str(e).splitlines() or [""])[0][:160]
    raise DeviceMemoryError(f"out of device memory {what}{needs}; {remedy} (XLA: {xla})") from None
