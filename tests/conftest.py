"""Shared fixtures and settings for the test suite."""

import hashlib

import hypothesis
import jax.numpy as jnp
import numpy as np
import pytest

hypothesis.settings.register_profile("ci", deadline=None, max_examples=30)
hypothesis.settings.load_profile("ci")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")


@pytest.fixture
def rng(request):
  """A Generator seeded from the test id: inputs differ across tests but repeat across runs."""
  digest = hashlib.sha256(request.node.nodeid.encode()).digest()
  return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _randomize(model, rng):
  """Non-zero biases, sinks and norm scales in every layer of a GptOss, so that none of them can
  be silently ignored (a fresh model has zero biases and sinks and unit norm scales)."""
  for block in model.layers:
    for var in (block.attn.qkv_bias, block.attn.out_bias, block.mlp.router_bias):
      var[...] = jnp.asarray(rng.normal(0, 0.1, var.shape), var.dtype)
    block.attn.sinks[...] = jnp.asarray(rng.normal(0, 1.0, block.attn.sinks.shape), jnp.float32)
    for norm in (block.attn_norm, block.mlp_norm):
      norm.scale[...] = jnp.asarray(1 + rng.normal(0, 0.1, norm.scale.shape), jnp.float32)
  return model


@pytest.fixture(scope="session")
def randomize():
  """``randomize(model, rng)``: the model with random biases, sinks and norm scales."""
  return _randomize
