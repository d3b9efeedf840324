"""Shared fixtures and settings for the test suite."""

import hashlib

import hypothesis
import jax
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
  """A GptOss in which no parameter can be silently ignored. A fresh model has zero biases and
  sinks, unit norm scales, and weights of std 0.02, at which attention scores are ~0.04
  (attention nearly uniform: a wrong window, rotation or scale moves the output by less than a
  bf16 tolerance) and router logits ~0.2 apart (near-ties that bf16 rounding flips to another
  expert). Here: scores and router logits of order one, sinks that take a real share of the
  attention, and small random biases and norm scales."""
  for block in model.layers:
    block.attn.qkv_weight[...] = block.attn.qkv_weight[...] * 5
    block.mlp.router_weight[...] = block.mlp.router_weight[...] * 10
    for var in (block.attn.qkv_bias, block.attn.out_bias, block.mlp.router_bias):
      var[...] = jnp.asarray(rng.normal(0, 0.02, var.shape), var.dtype)
    block.attn.sinks[...] = jnp.asarray(rng.normal(1.0, 1.0, block.attn.sinks.shape), jnp.float32)
    for norm in (block.attn_norm, block.mlp_norm):
      norm.scale[...] = jnp.asarray(1 + rng.normal(0, 0.1, norm.scale.shape), jnp.float32)
  return model


@pytest.fixture(scope="session")
def randomize():
  """``randomize(model, rng)``: the model with parameters that every path must use (above)."""
  return _randomize


@pytest.fixture
def lowered_for_h100(monkeypatch):
  """Pallas kernels lowered in the test (``.lower(lowering_platforms=("cuda",))``, no compile)
  as for an H100: the GPU query the lowering makes is answered as one. Each Triton module is
  verified as the GPU compiler will, since an invalid op (e.g. an scf.for whose bounds differ in
  type) otherwise surfaces only at compile time on a GPU; interpret mode accepts ops the
  lowering rejects, and the other way round. -> a list that receives (verified, module text)
  for each kernel lowered."""
  from jax._src.pallas.triton import gpu_info, pallas_call_registration  # noqa: PLC0415

  monkeypatch.setattr(pallas_call_registration.gpu_info_lib, "get_gpu_info",
                      lambda: gpu_info.get_gpu_info_from_version(gpu_info.GpuVersion.H100))
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # the kernels' own GPU check
  modules = []
  lower_module = pallas_call_registration.lowering.lower_jaxpr_to_triton_module

  def lower_and_verify(*args, **kwargs):
    result = lower_module(*args, **kwargs)
    modules.append((result.module.operation.verify(), result.module.operation.get_asm()))
    return result

  monkeypatch.setattr(pallas_call_registration.lowering, "lower_jaxpr_to_triton_module",
                      lower_and_verify)
  return modules
