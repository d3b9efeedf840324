"""GPT-OSS safetensors checkpoints (HF and ``original/`` layouts) read into one canonical naming."""

from mxfp4_jax.checkpoint.config_json import (HPARAM_KEYS, parse_config, read_config, to_hf_config,
                                              to_original_config)
from mxfp4_jax.checkpoint.errors import CheckpointError
from mxfp4_jax.checkpoint.names import canonical_shapes
from mxfp4_jax.checkpoint.random_checkpoint import random_canonical, write_random_checkpoint
from mxfp4_jax.checkpoint.safetensors_io import detect_layout, iter_canonical, read_hparams

__all__ = [
    "CheckpointError", "HPARAM_KEYS", "canonical_shapes", "detect_layout", "iter_canonical",
    "parse_config", "random_canonical", "read_config", "read_hparams", "to_hf_config",
    "to_original_config", "write_random_checkpoint",
]
