"""XLA's memory figures for one prefill call and the first token's sampling of GPT-OSS-120B at
batch 256, compiled for sm_90 on a compile-only device (no GPU; `pip install -e '.[cuda13]'`).

  PYTHONPATH=. python benchmarks/h100-2026-12-07f/prefill_memory.py 36 32 1024 256
  (arguments: layers, rows a prefill call, prompt length, batch)
"""

import sys
from unittest import mock

import jax
import jax.numpy as jnp
from flax import nnx
from jax.experimental import topologies
from jax.sharding import SingleDeviceSharding

from configs import gpt_oss_20b
from experiments import common, hopper
from mxfp4_jax.generate.engine import Generator
from mxfp4_jax.generate.sampling import SamplingParams
from mxfp4_jax.model import GptOss

jax.config.update("jax_platforms", "cpu")
target = (common.REPO / "configs/gpu_targets/h200.txtpb").read_text()  # sm_90, as the H100
device = topologies.get_topology_desc(platform="cuda", target_config=target,
                                      topology="1x1x1").devices[0]
sharding = SingleDeviceSharding(device)
layers, rows, length, batch = map(int, sys.argv[1:5])
cfg = common.model_config(gpt_oss_20b.model_config(num_layers=layers, num_experts=128))
model = nnx.eval_shape(lambda: GptOss(cfg, rngs=nnx.Rngs(0)))
generator = Generator(model, max_len=length + 65)  # bench_e2e's: 64 decode steps and one more
on_device = lambda tree: jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)
caches = on_device(jax.eval_shape(lambda: model.init_cache(batch, length + 65)))
logits = jax.ShapeDtypeStruct((batch, cfg.vocab_size), jnp.float32, sharding=sharding)
tokens = jax.ShapeDtypeStruct((rows, length), jnp.int32, sharding=sharding)
first_row = jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding)
key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=sharding)
GiB = 2**30
with hopper.compiling_for_hopper(), mock.patch("jax.default_backend", return_value="gpu"):
  prefill = generator._prefill.trace(on_device(generator.state), logits, caches, tokens, tokens,
                                     first_row).lower(lowering_platforms=("cuda",)).compile()
  sample = generator._sample.trace(logits, key, params=SamplingParams(temperature=0)).lower(
      lowering_platforms=("cuda",)).compile()
for name, compiled in (("prefill", prefill), ("sample", sample)):
  m = compiled.memory_analysis()
  print(f"{name}: layers {layers}, {rows} rows of {length} tokens, batch {batch}: arguments "
        f"{m.argument_size_in_bytes / GiB:.2f} GiB, outputs {m.output_size_in_bytes / GiB:.2f} "
        f"(aliased {m.alias_size_in_bytes / GiB:.2f}), "
        f"temporaries {m.temp_size_in_bytes / GiB:.4f}")
