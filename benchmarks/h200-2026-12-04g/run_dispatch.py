"""Host cost of calling the compiled prefill with the whole model state."""
import time
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from configs import gpt_oss_20b
from mxfp4_jax.model import GptOss, GptOssConfig
from mxfp4_jax.generate.engine import Generator, GenerationStats

c = gpt_oss_20b.get_config()
model = GptOss(GptOssConfig.from_dict(c.model), rngs=nnx.Rngs(0))
gen = Generator(model, max_len=1025)
state = gen.state
print("leaves", len(jax.tree.leaves(state)))
tokens = np.random.default_rng(0).integers(0, 201088, (1, 1024)).astype(np.int32)
positions = np.arange(1024, dtype=np.int32)[None]
prefill = gen._compile(GenerationStats(), ("p",), gen._prefill, state, tokens, positions)
jax.block_until_ready(prefill(state, tokens, positions))
tok_d, pos_d = jnp.asarray(tokens), jnp.asarray(positions)
for name, args in (("numpy tokens", (tokens, positions)), ("device tokens", (tok_d, pos_d))):
  calls, totals = [], []
  for _ in range(7):
    t0 = time.perf_counter(); out = prefill(state, *args); t1 = time.perf_counter()
    jax.block_until_ready(out); t2 = time.perf_counter()
    calls.append(t1 - t0); totals.append(t2 - t0)
  print(f"{name}: call returns after {np.median(calls)*1e3:.2f} ms, done after {np.median(totals)*1e3:.2f} ms")
for n in (1, 2, 3):
  totals = []
  for _ in range(5):
    t0 = time.perf_counter()
    outs = [prefill(state, tok_d, pos_d) for _ in range(n)]
    jax.block_until_ready(outs); totals.append(time.perf_counter() - t0)
  print(f"{n} calls back to back: {np.median(totals)*1e3:.2f} ms")
