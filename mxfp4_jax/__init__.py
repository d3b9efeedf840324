"""mxfp4_jax: GPT-OSS in JAX with its MXFP4 experts kept 4-bit, decoded in a Pallas kernel."""

__version__ = "0.1.0"
