"""experiments.generate's main, twice in one process, with the times between streamed chunks."""
import sys
import time

sys.argv = ["generate", "--config=configs/generate.py:gpt_oss_20b", *sys.argv[1:]]
from absl import flags  # noqa: E402

from experiments import generate as g  # noqa: E402

flags.FLAGS(sys.argv)
generate = g.Generator.generate


def timed(self, *args, on_tokens=None, **kwargs):
  marks = []

  def streamed(new):
    marks.append(time.perf_counter())
    on_tokens(new)
  result = generate(self, *args, on_tokens=streamed, **kwargs)
  print("\nbetween chunks, ms:", " ".join(f"{(b - a) * 1e3:.1f}" for a, b in zip(marks, marks[1:])))
  return result


g.Generator.generate = timed
for _ in range(2):
  g.main([])
