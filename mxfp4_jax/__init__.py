"""mxfp4_jax: GPT-OSS in JAX with its MXFP4 experts kept 4-bit, decoded in a Pallas kernel."""

__version__ = "0.1.0"


def load_model(path, **kwargs):
  """Loads a GPT-OSS checkpoint directory; see `mxfp4_jax.model.loading.load_model`."""
  from mxfp4_jax.model.loading import load_model as load  # noqa: PLC0415 - keeps import light
  return load(path, **kwargs)
