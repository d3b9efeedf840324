import jax, jax.numpy as jnp
from mxfp4_jax import benchmarking
for name, (k, n) in {"qkv": (2880, 5120), "o": (4096, 2880)}.items():
  ws = [jax.random.normal(jax.random.key(i), (k, n), jnp.bfloat16) for i in range(8)]
  x = jnp.ones((1, k), jnp.bfloat16)
  mb = k * n * 2 / 1e6
  for copies in (8, 1):
    t = benchmarking.time_per_call(lambda x, w: x @ w, [(x, w) for w in ws[:copies]], repeats=5)
    print(f"{name} [1,{k}]@[{k},{n}] bf16 ({mb:.1f} MB), {copies} weight copies: {t*1e6:.2f} us, {mb/1e6/t:.2f} TB/s", flush=True)
