"""GPT-OSS hyperparameters: one dataclass, read from configs/ files or a checkpoint's
config.json."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from mxfp4_jax.kernels import BACKENDS as MOE_BACKENDS, default_backend
from mxfp4_jax.kernels.router import BACKENDS as ROUTER_BACKENDS, kernel_unsupported_reason
from mxfp4_jax.kernels.swiglu import SWIGLU_ALPHA, SWIGLU_LIMIT
from mxfp4_jax.kernels.tuning import one_row_tiles_suit


def yarn_context_length(original_context: int, scaling_factor: float) -> int:
  """Positions a model is trained for: YaRN stretches the original context by its factor."""
  return int(original_context * max(scaling_factor, 1.0))


@dataclasses.dataclass(frozen=True)
class GptOssConfig:
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_experts: int
  experts_per_token: int
  intermediate_size: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  sliding_window: int
  rope_theta: float
  rope_scaling_factor: float
  rope_original_context: int
  rope_beta_fast: float
  rope_beta_slow: float
  rms_norm_eps: float = 1e-5
  swiglu_limit: float = SWIGLU_LIMIT
  swiglu_alpha: float = SWIGLU_ALPHA
  # How to run it (not part of the checkpoint):
  dtype: str = "bfloat16"  # activations and dense weights; "float32" for exact comparisons
  # "pallas" (GPU), "reference" (jnp), "auto": pallas on GPU or with moe_interpret, the
  # reference elsewhere and for a float32 model (`resolved_moe_backend`)
  moe_backend: str = "auto"
  # Run the MoE's Pallas kernels (the grouped matmuls and the router's) in interpret mode: off
  # a GPU, the only way they run (CPU tests).
  moe_interpret: bool = False
  # Attention: "pallas" (the flash kernels for prefill and decode; interpret mode off the GPU),
  # "xla" (jnp), "auto": pallas on GPU in bfloat16.
  attention_backend: str = "auto"
  # The MoE router's top-k (`mxfp4_jax.kernels.router.BACKENDS`): "xla", "top_k" (a Pallas
  # top-k and softmax after XLA's product); "auto": top_k where the experts run the Pallas
  # kernel and the top-k kernel can (bfloat16, k a power of two).
  router_backend: str = "auto"

  HPARAMS = ("vocab_size", "hidden_size", "num_layers", "num_experts", "experts_per_token",
             "intermediate_size", "num_heads", "num_kv_heads", "head_dim", "sliding_window",
             "rope_theta", "rope_scaling_factor", "rope_original_context", "rope_beta_fast",
             "rope_beta_slow", "rms_norm_eps", "swiglu_limit")
  # How to run it: what `mxfp4_jax.load_model` takes beside a checkpoint's hyperparameters.
  RUNTIME = ("dtype", "moe_backend", "moe_interpret", "attention_backend", "router_backend")

  def __post_init__(self):
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      ok = {"int": lambda v: type(v) is int, "bool": lambda v: type(v) is bool,
            "str": lambda v: type(v) is str,
            "float": lambda v: type(v) in (int, float)}[f.type](value)
      if not ok:
        raise TypeError(f"{f.name} must be {'an' if f.type == 'int' else 'a'} {f.type}, "
                        f"got {value!r}")
    for name in (*self.HPARAMS, "swiglu_alpha"):
      value = getattr(self, name)
      if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    if self.rope_scaling_factor > 1 and not self.rope_beta_fast > self.rope_beta_slow:
      raise ValueError(f"rope_beta_fast={self.rope_beta_fast} must exceed "
                       f"rope_beta_slow={self.rope_beta_slow} (YaRN's ramp runs between them)")
    if not self.rope_theta > 1:
      raise ValueError(f"rope_theta must exceed 1, got {self.rope_theta}")
    low, high = self.yarn_ramp
    if self.rope_scaling_factor > 1 and not 0 < low < high < self.head_dim // 2 - 1:
      raise ValueError(f"YaRN's ramp over rotary dims {low:.2f} to {high:.2f} must lie within "
                       f"(0, head_dim / 2 - 1 = {self.head_dim // 2 - 1}); head_dim, rope_theta, "
                       "rope_original_context and the betas place it")
    if self.head_dim % 2:
      raise ValueError(f"head_dim={self.head_dim} must be even (RoPE rotates pairs of dims)")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} must be a multiple of "
                       f"num_kv_heads={self.num_kv_heads}")
    if not 0 < self.experts_per_token <= self.num_experts:
      raise ValueError(f"experts_per_token={self.experts_per_token} must be in "
                       f"[1, num_experts={self.num_experts}]")
    for name in ("hidden_size", "intermediate_size"):
      if getattr(self, name) % 32:
        raise ValueError(f"{name}={getattr(self, name)} must be a multiple of 32 (MXFP4 blocks)")
    if self.dtype not in ("bfloat16", "float32"):
      raise ValueError(f"dtype must be 'bfloat16' or 'float32', got {self.dtype!r}")
    if self.moe_backend not in MOE_BACKENDS:
      raise ValueError(f"moe_backend must be one of {MOE_BACKENDS}, got {self.moe_backend!r}")
    if self.router_backend not in ("auto", *ROUTER_BACKENDS):
      raise ValueError(f"router_backend must be 'auto' or one of {ROUTER_BACKENDS}, "
                       f"got {self.router_backend!r}")
    if self.attention_backend not in ("auto", "pallas", "xla"):
      raise ValueError(f"attention_backend must be 'auto', 'pallas' or 'xla', "
                       f"got {self.attention_backend!r}")

  @property
  def yarn_ramp(self) -> tuple[float, float]:
    """The rotary dims (of head_dim / 2) where YaRN's ramp from keeping a frequency (dims that
    rotate more than ``rope_beta_fast`` times over the original context) to interpolating it
    (fewer than ``rope_beta_slow`` times) begins and ends."""
    def dim_rotating(times: float) -> float:
      return (self.head_dim // 2 * math.log(self.rope_original_context / (times * 2 * math.pi))
              / math.log(self.rope_theta))
    return dim_rotating(self.rope_beta_fast), dim_rotating(self.rope_beta_slow)

  @property
  def context_length(self) -> int:
    """`yarn_context_length`: 131,072 for GPT-OSS (HF's ``max_position_embeddings``). Past it
    RoPE extrapolates."""
    return yarn_context_length(self.rope_original_context, self.rope_scaling_factor)

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def q_size(self) -> int:
    return self.num_heads * self.head_dim

  @property
  def kv_size(self) -> int:
    return self.num_kv_heads * self.head_dim

  @property
  def resolved_moe_backend(self) -> str:
    """"pallas" or "reference". "auto" means the Pallas kernel on GPU (or in interpret mode),
    except in float32, which the kernel (bf16 operands) does not compute: a float32 model runs
    its experts through the jnp reference everywhere."""
    if self.moe_backend != "auto":
      return self.moe_backend
    if self.dtype == "float32":
      return "reference"
    return "pallas" if self.moe_interpret else default_backend()

  def moe_one_row_tiles(self, tokens: int) -> bool:
    """Whether the MoE runs the rows of ``tokens`` tokens one kernel tile each (the grouped
    matmul's ``row_experts``: no sort): a decode step's few rows, about one per expert."""
    return one_row_tiles_suit(tokens * self.experts_per_token, self.num_experts)

  @property
  def resolved_router_backend(self) -> str:
    if self.router_backend != "auto":
      return self.router_backend
    kernel = self.resolved_moe_backend == "pallas" and not kernel_unsupported_reason(
        self.jnp_dtype, self.experts_per_token, self.num_experts)
    return "top_k" if kernel else "xla"

  def check_moe_kernels_run_here(self, owner: str = "GptOssConfig.") -> None:
    """The MoE's Pallas kernels compile for a GPU only: chosen elsewhere without
    ``moe_interpret``, a one-line error naming the fields (``owner`` before each: a class or a
    flag), not one from inside the kernels."""
    here = jax.default_backend()
    if here == "gpu" or self.moe_interpret:
      return
    chosen = []
    for name, resolved in (("moe_backend", self.resolved_moe_backend),
                           ("router_backend", self.resolved_router_backend)):
      if resolved in ("pallas", "top_k"):  # the Pallas kernels, not "reference" or "xla"
        value = getattr(self, name)
        resolved_note = f" (here {resolved!r})" if value == "auto" else ""
        chosen.append(f"{owner}{name}={value!r}{resolved_note}")
    if chosen:
      raise ValueError(f"{' and '.join(chosen)} compile{'s' * (len(chosen) == 1)} for a GPU "
                       f"only; on {here} set {owner}moe_interpret=True")

  @property
  def resolved_attention_backend(self) -> str:
    """"auto": the flash kernel on GPU, except in float32 (its dots take bf16 operands)."""
    if self.attention_backend != "auto":
      return self.attention_backend
    return "pallas" if jax.default_backend() == "gpu" and self.dtype != "float32" else "xla"

  @property
  def attention_interpret(self) -> bool:
    """The attention kernels run in interpret mode off a GPU (attention_backend="pallas" there:
    the tests)."""
    return jax.default_backend() != "gpu"

  @staticmethod
  def is_sliding(layer: int) -> bool:
    """Even layers attend within a window of `sliding_window` keys; odd layers to all."""
    return layer % 2 == 0

  def hparams(self) -> dict:
    return {name: getattr(self, name) for name in self.HPARAMS}

  @classmethod
  def from_dict(cls, values) -> GptOssConfig:
    """From a dict or ConfigDict with the fields above (extra keys are an error)."""
    try:
      values = dict(values)
    except (TypeError, ValueError):
      raise TypeError(f"GptOssConfig.from_dict takes a dict or ConfigDict, got "
                      f"{type(values).__name__}") from None
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown model config key(s): {', '.join(unknown)}")
    missing = sorted(name for name in cls.HPARAMS if name not in values)
    if missing:
      raise ValueError(f"model config is missing: {', '.join(missing)}")
    return cls(**values)

  def replace(self, **changes) -> GptOssConfig:
    return dataclasses.replace(self, **changes)
