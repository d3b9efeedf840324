"""Shared fixtures and settings for the test suite."""

import hashlib

import hypothesis
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
