"""GPT-OSS in Flax NNX."""

from mxfp4_jax.model.config import GptOssConfig
from mxfp4_jax.model.gpt_oss import GptOss, MXFP4Experts

__all__ = ["GptOss", "GptOssConfig", "MXFP4Experts"]
