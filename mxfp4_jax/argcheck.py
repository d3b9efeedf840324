"""Tests of arguments that the public API shares (what counts as an int, a real number, a power
of two, a sequence, a value whose contents can be read; host integers that fit int32), so each
reads the same everywhere."""

from __future__ import annotations

import numbers

import jax
import numpy as np


def is_int(value) -> bool:
  """A Python or NumPy integer. A bool is not one: True as a size, an axis or a token id is a slip."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
  """A Python or NumPy real number (an int too), not a bool: True as a rate or a temperature is
  a slip."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_power_of_two(value) -> bool:
  """An int of 1, 2, 4, ...: what Triton takes for block shapes and warp counts."""
  return is_int(value) and value >= 1 and not value & (value - 1)


def ints_of_array(value):
  """A concrete NumPy or JAX integer array (or scalar) as Python ints: a list, or an int for a
  0-d one, so that ids given as ``jnp.array([...])``, or lists of ``jnp.int32`` scalars read
  one by one, pass the checks Python ints pass. Any other value comes back unchanged, for the
  caller's own checks to name."""
  if (isinstance(value, (np.ndarray, np.generic, jax.Array)) and is_concrete(value)
      and np.issubdtype(value.dtype, np.integer)):
    return np.asarray(value).tolist()
  return value


def is_sequence(value) -> bool:
  """Something to iterate over other than text: a string iterates by character, which no caller
  that asks for a sequence of ids or messages means."""
  return hasattr(value, "__iter__") and not isinstance(value, (str, bytes))


def is_concrete(value) -> bool:
  """A value whose contents Python can read, not a tracer: checks of contents (ranges, sums,
  finiteness) run where this holds and are left to the caller's contract under a trace."""
  return not isinstance(value, jax.core.Tracer)


def check_int32_range(**arrays) -> None:
  """Host integers past int32, which jnp.asarray would wrap before the value checks see them."""
  for name, a in arrays.items():
    if a is None or isinstance(a, jax.Array):
      continue
    host = np.asarray(a)
    if host.dtype.kind in "iu" and host.size and not (
        np.iinfo(np.int32).min <= host.min() and host.max() <= np.iinfo(np.int32).max):
      raise ValueError(f"{name} holds values outside int32: from {host.min()} to {host.max()}")
