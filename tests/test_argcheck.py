"""The shared argument tests: what counts as an int, a real number, a power of two, a sequence of
items and a value whose contents can be read."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mxfp4_jax.argcheck import is_concrete, is_int, is_power_of_two, is_real, is_sequence


@pytest.mark.parametrize("value", [0, -3, 2**40, np.int32(7), np.uint8(255), np.int64(-1)])
def test_ints(value):
  assert is_int(value)


@pytest.mark.parametrize("value", [True, np.bool_(False), 1.0, np.float32(2), "3", None,
                                   np.array(4), [5]])
def test_not_ints(value):
  assert not is_int(value)


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), float("inf"), np.float32(0.5),
                                   np.int8(3)])
def test_reals(value):
  assert is_real(value)


@pytest.mark.parametrize("value", [True, np.bool_(True), "1.0", None, 1j, np.array(2.0), [1.0]])
def test_not_reals(value):
  assert not is_real(value)


@pytest.mark.parametrize("value", [1, 2, 16, 2**20, np.int32(64)])
def test_powers_of_two(value):
  assert is_power_of_two(value)


@pytest.mark.parametrize("value", [0, -2, 3, 12, 48, True, 2.0, "4"])
def test_not_powers_of_two(value):
  assert not is_power_of_two(value)


@pytest.mark.parametrize("value", [[], (1, 2), range(3), np.arange(2), iter([1]), {"a": 1}])
def test_sequences(value):
  assert is_sequence(value)


@pytest.mark.parametrize("value", ["ab", b"ab", 1, None, 2.5])
def test_not_sequences(value):
  assert not is_sequence(value)


def test_concrete_outside_a_trace_only():
  seen = []

  def f(x):
    seen.append(is_concrete(x))
    return x

  x = jnp.arange(3)
  f(x)
  jax.jit(f)(x)
  jax.vmap(f)(x)
  assert seen == [True, False, False]
  assert is_concrete(np.arange(2)) and is_concrete(3)
