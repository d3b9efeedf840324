"""Where generate's decode time goes: per-chunk wall times, three generations in one process."""
import time

from flax import nnx

from configs import gpt_oss_20b
from experiments import common
from mxfp4_jax.generate.engine import Generator
from mxfp4_jax.model import GptOss

model = GptOss(common.model_config(gpt_oss_20b.get_config().model), rngs=nnx.Rngs(0))
for max_len in (4096, 1280):
  gen = Generator(model, max_len=max_len, chunk=16)
  prompt = list(range(1, 109))
  for n in (40, 40, 200):
    marks = []
    result = gen.generate([prompt], max_new_tokens=n, on_tokens=lambda t: marks.append(time.perf_counter()))
    s = result.stats
    chunks = [f"{(b - a) * 1e3:.1f}" for a, b in zip(marks, marks[1:])]
    print(f"max_len {max_len} new {n}: compile {s.compile_s:.2f} s, first token "
          f"{s.prefill_s * 1e3:.1f} ms, decode {s.decode_tokens_per_s:.1f} tok/s "
          f"({s.decode_tokens} tokens, {s.decode_s * 1e3:.1f} ms); chunks ms: {' '.join(chunks)}",
          flush=True)
