"""The generation engine: KV-cache decoding equals the full forward, batching and padding change
nothing, sampling is reproducible, stop tokens stop, bad lengths fail early."""

import contextlib
import fractions
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from mxfp4_jax.device_memory import DeviceMemoryError
from mxfp4_jax.generate.engine import (DECODE_COMPILER_OPTIONS, Generator, left_pad,
                                       prefill_rows, prefill_starts)
from mxfp4_jax.generate.sampling import SamplingParams, sample
from mxfp4_jax.model import GptOss, GptOssConfig

CFG = GptOssConfig.from_dict(tiny.model_config()).replace(dtype="float32",
                                                          moe_backend="reference")
GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def model():
  return GptOss(CFG, rngs=nnx.Rngs(7))


@pytest.fixture(scope="module")
def generator(model):
  return Generator(model, max_len=64, chunk=8)


# The kernels' bf16 operands at order-one scores err by ~5e-3; a window off by one, or a step
# without the sinks, the qkv bias or the norm's weight, by 3e-2 to 0.5.
@pytest.mark.parametrize("attention, tol", [("xla", 1e-5), ("pallas", 1e-2)])
@pytest.mark.parametrize("prompt_len", [5, 19])
def test_cached_decode_logits_equal_full_forward(prompt_len, attention, tol, randomize):
  """Prefill a prompt shorter, then longer, than the 16-slot sliding ring (window 8), then feed
  the rest one token at a time: every position's logits equal the full forward's (float32, jnp
  attention). With "pallas" the prefill and decode attention run the kernels (bf16 operands),
  the decode step's taking the attention norm's weight and the qkv bias itself: both random.
  There every expert is routed: the kernels' bf16 rounding can swap two experts whose router
  logits nearly tie (a relative error of ~0.2 at that token), which says nothing of the cache."""
  cfg = CFG.replace(experts_per_token=CFG.num_experts) if attention == "pallas" else CFG
  model = randomize(GptOss(cfg.replace(attention_backend=attention), rngs=nnx.Rngs(7)),
                    np.random.default_rng(1))
  assert [c.k.shape[1] for c in model.init_cache(2, 32)] == [16, 32]
  reference = randomize(GptOss(cfg, rngs=nnx.Rngs(7)), np.random.default_rng(1))
  tokens = np.random.default_rng(0).integers(0, CFG.vocab_size, (2, 25)).astype(np.int32)
  full = np.asarray(reference(jnp.asarray(tokens)))
  positions = np.broadcast_to(np.arange(25, dtype=np.int32), (2, 25))
  caches = model.init_cache(2, 32)
  logits, caches = model.forward(tokens[:, :prompt_len], positions[:, :prompt_len], caches,
                                 start=0)
  stepped = [np.asarray(logits)]
  for t in range(prompt_len, 25):
    logits, caches = model.forward(tokens[:, t:t + 1], positions[:, t:t + 1], caches, start=t)
    stepped.append(np.asarray(logits))
  stepped = np.concatenate(stepped, axis=1)
  assert np.linalg.norm(stepped - full) / np.linalg.norm(full) < tol
  last, _ = model.forward(tokens, positions, model.init_cache(2, 32), start=0, last_only=True)
  assert np.linalg.norm(np.asarray(last)[:, 0] - full[:, -1]) / np.linalg.norm(full[:, -1]) < tol


def test_a_chunk_of_tokens_after_a_prefill_equals_the_full_forward(randomize):
  """A prompt fed in two calls, the second (21 tokens) longer than the sliding layer's 16-slot
  ring and starting past a 10-token prefill, then one decode step: each position attends over
  the cache as it was plus the new keys, and its logits equal the full forward's."""
  model = randomize(GptOss(CFG, rngs=nnx.Rngs(3)), np.random.default_rng(4))
  tokens = np.random.default_rng(5).integers(0, CFG.vocab_size, (2, 32)).astype(np.int32)
  positions = np.broadcast_to(np.arange(32, dtype=np.int32), (2, 32))
  full = np.asarray(model(jnp.asarray(tokens)))
  caches, pieces = model.init_cache(2, 40), []
  for begin, end in ((0, 10), (10, 31), (31, 32)):
    logits, caches = model.forward(tokens[:, begin:end], positions[:, begin:end], caches,
                                   start=begin)
    pieces.append(np.asarray(logits))
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-4, atol=1e-4)


def test_greedy_generation_is_the_full_forward_argmax(randomize):
  """Prompts of different lengths, padded, then greedy decoding in chunks: every generated token
  is the argmax of the whole model run on its row's prompt and the tokens before it."""
  model = randomize(GptOss(CFG, rngs=nnx.Rngs(5)), np.random.default_rng(6))
  prompts = [[7, 3, 9], list(range(20, 31)), [100]]
  generated = Generator(model, max_len=40, chunk=5).generate(
      prompts, max_new_tokens=14, params=GREEDY).tokens
  for prompt, tokens in zip(prompts, generated):
    sequence = jnp.asarray([prompt + tokens[:-1]], jnp.int32)
    argmax = np.asarray(model(sequence)[0, len(prompt) - 1:].argmax(-1))
    np.testing.assert_array_equal(argmax, tokens)


def test_prompt_alone_or_in_a_padded_batch_gives_the_same_tokens(generator):
  prompts = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [42]]
  batch = generator.generate(prompts, max_new_tokens=20, params=GREEDY).tokens
  for prompt, tokens in zip(prompts, batch):
    assert generator.generate([prompt], max_new_tokens=20, params=GREEDY).tokens[0] == tokens


def test_left_pad_marks_padding():
  tokens, positions = left_pad([[9, 9], [1, 2, 3]], pad_id=0)
  np.testing.assert_array_equal(tokens, [[0, 9, 9], [1, 2, 3]])
  np.testing.assert_array_equal(positions, [[-1, 0, 1], [0, 1, 2]])


def test_sampling_is_reproducible_and_independent_of_chunking(model):
  params = SamplingParams(temperature=1.0, top_k=50, top_p=0.9)
  prompts = [[3, 1, 4, 1, 5], [9, 2, 6]]
  runs = [Generator(model, max_len=64, chunk=chunk).generate(
      prompts, max_new_tokens=24, params=params, seed=11).tokens for chunk in (4, 7, 24)]
  assert runs[0] == runs[1] == runs[2]
  other_seed = Generator(model, max_len=64, chunk=4).generate(
      prompts, max_new_tokens=24, params=params, seed=12).tokens
  assert other_seed != runs[0]


def test_decode_compiler_options_reach_the_decode_loop_only(model, monkeypatch):
  """XLA options for the decode loop: the loop, not the prefill or the sampling, is jitted with
  them (by default `DECODE_COMPILER_OPTIONS` for two rows or more and none for one; given
  options at every batch), and the tokens are the same."""
  lowered = []  # the options of each decode loop compiled
  jit = jax.jit

  def recording_jit(fn, **kwargs):
    jitted, options = jit(fn, **kwargs), kwargs.get("compiler_options")
    if fn.__name__ in ("_empty_fn", "_prefill_fn", "_sample_fn"):
      assert options is None, fn.__name__
    if fn.__name__ != "_decode_fn":  # (the options' own check compiles a trivial function)
      return jitted

    class Recording:
      def lower(self, *args, **static):
        lowered.append(tuple(options.items()) if options else None)
        return jitted.lower(*args, **static)
    return Recording()

  monkeypatch.setattr(jax, "jit", recording_jit)
  generators = dict(default=Generator(model, max_len=64, chunk=8),
                    none=Generator(model, max_len=64, chunk=8, decode_compiler_options={}))
  monkeypatch.undo()
  tokens, options = {}, {}
  for name, generator in generators.items():
    for prompts in ([[5, 6, 7], [42]], [[9, 8]]):
      lowered.clear()
      tokens[name, len(prompts)] = generator.generate(prompts, max_new_tokens=12,
                                                      params=GREEDY).tokens
      options[name, len(prompts)] = set(lowered)
  assert options["default", 2] == {tuple(DECODE_COMPILER_OPTIONS.items())}
  assert options["default", 1] == options["none", 2] == options["none", 1] == {None}
  assert tokens["default", 2] == tokens["none", 2] and tokens["default", 1] == tokens["none", 1]


@pytest.mark.parametrize("options, message", [
    ({"xla_no_such_option": 1}, "decode_compiler_options: .*No such compile option: "
                                "'xla_no_such_option'"),
    ({"xla_gpu_command_buffer_scheduling_mode": "SOMETIMES"}, "'SOMETIMES' is not a valid enum"),
    ({"xla_gpu_graph_enable_concurrent_region": [True]},
     "xla_gpu_graph_enable_concurrent_region must be a str, bool, int or float"),
    ("xla_gpu_autotune_level=2", "decode_compiler_options must map XLA option names to values"),
])
def test_bad_decode_compiler_options_are_named(model, options, message):
  with pytest.raises(ValueError, match=message):
    Generator(model, max_len=64, decode_compiler_options=options)


def test_decode_loop_has_a_static_trip_count(generator):
  """A loop condition computed on the device (e.g. "every row is done") makes each step wait on
  the host; the chunk's loop must count its steps instead (a scan, not a while loop)."""
  caches = generator._model(generator.state).init_cache(2, generator.max_len)
  rows = jnp.zeros(2, jnp.int32)
  jaxpr = jax.make_jaxpr(lambda *a: generator._decode_fn(*a, steps=4, params=GREEDY))(
      generator.state, caches, rows, rows, jnp.zeros(2, bool), jnp.int32(3), jax.random.key(0))
  primitives = {e.primitive.name for e in jaxpr.jaxpr.eqns}
  assert "scan" in primitives and "while" not in primitives


@pytest.mark.parametrize("batch", [6, 7])
def test_prefill_in_row_groups_gives_the_same_tokens(model, batch):
  """Prompts of length 5 with room for 10 prompt tokens per call: 6 prompts in three prefills of
  2 rows; 7 (the last shorter) in four, the last from row 5 (which the third prefilled too).
  Each call writes its rows into the batch's caches and logits in place: the compiled call's
  outputs are its donated inputs."""
  prompts = [[3, 1, 4, 1, 5], [9, 2, 6, 5, 3], [5, 8, 9, 7, 9], [3, 2, 3, 8, 4], [6, 2, 6, 4, 3],
             [3, 8, 3, 2, 7], [2, 7, 1]][:batch]  # the last left-padded, in the overlapping call
  assert prefill_rows(batch, 5, 10) == 2 and prefill_rows(batch, 5, 99) == batch
  assert prefill_starts(batch, 2) == [0, 2, 4, 5][:batch // 2 + batch % 2]
  assert prefill_rows(257, 1024, 1 << 15) == 29 and prefill_rows(256, 1024, 1 << 15) == 32
  assert prefill_starts(257, 29) == [0, 29, 58, 87, 116, 145, 174, 203, 228]
  assert prefill_rows(257, 1024) == 8 and prefill_starts(257, 8)[-2:] == [248, 249]  # the default
  assert prefill_starts(4, 4) == [0]
  generator = Generator(model, max_len=64, prefill_tokens=10)
  grouped = generator.generate(prompts, max_new_tokens=12, params=GREEDY)
  whole = Generator(model, max_len=64).generate(prompts, max_new_tokens=12, params=GREEDY)
  assert grouped.tokens == whole.tokens and len(grouped.tokens) == batch
  compiled = {key[0]: c for key, c in generator._compiled.items()}
  filled = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(compiled["empty"].out_info))
  assert compiled["prefill"].memory_analysis().alias_size_in_bytes == filled > 0


@pytest.mark.parametrize("stop_at", [5, 0])  # a decode step's token; the prefill's
def test_stop_token_ends_a_row(model, stop_at):
  """A row ends at its first stop token, which it keeps, and streams nothing after it; the other
  row runs on."""
  prompts = [[10, 20, 30], [7, 8]]
  free = Generator(model, max_len=64).generate(prompts, max_new_tokens=16, params=GREEDY).tokens
  stop = free[0][stop_at]
  first = free[0].index(stop)
  streamed = []
  stopped = Generator(model, max_len=64, stop_ids=[stop], chunk=4).generate(
      prompts, max_new_tokens=16, params=GREEDY, on_tokens=streamed.append).tokens
  assert stopped[0] == free[0][:first + 1]
  assert sum((chunk[0] for chunk in streamed), []) == stopped[0]
  assert sum((chunk[1] for chunk in streamed), []) == stopped[1]
  if stop not in free[1]:
    assert stopped[1] == free[1]
  # Stop ids as an iterator or a JAX array, and NumPy ints for the counts: the same generation.
  for stop_ids in (iter([stop]), jnp.asarray([stop]), [jnp.int32(stop)]):
    generator = Generator(model, max_len=np.int64(64), stop_ids=stop_ids, chunk=np.int32(4),
                          pad_id=jnp.int32(0))
    again = generator.generate(prompts, max_new_tokens=16, params=GREEDY).tokens
    assert again == stopped


def recorded_launches(generator, events):
  """Has each decode chunk ``generator`` launches append "launch" to ``events``, and each decode
  loop it compiles "compile <steps>"."""
  compile_once = generator._compile

  def compile_and_record(stats, key, *args, **static):
    if key[0] != "decode":
      return compile_once(stats, key, *args, **static)
    if key not in generator._compiled:
      events.append(f"compile {key[2]}")
    compiled = compile_once(stats, key, *args, **static)
    return lambda *a: events.append("launch") or compiled(*a)
  generator._compile = compile_and_record
  return generator


def test_the_next_chunk_is_launched_before_one_is_read(model):
  """8 decode steps in chunks of 2: chunk i + 1 is in flight while the host reads chunk i (read:
  its tokens streamed); the tokens are those of chunks read one at a time (chunk of 8)."""
  events = []
  generator = recorded_launches(Generator(model, max_len=64, chunk=2), events)
  tokens = generator.generate([[1, 2, 3]], max_new_tokens=9, params=GREEDY,
                              on_tokens=lambda new: events.append("read")).tokens
  assert events == ["read", "compile 2", "launch", "launch", "read", "launch", "read", "launch",
                    "read", "read"]
  whole = Generator(model, max_len=64, chunk=8).generate([[1, 2, 3]], max_new_tokens=9,
                                                         params=GREEDY).tokens
  assert tokens == whole


def test_a_traced_chunk_runs_alone_and_its_tracing_is_not_timed(model):
  """The trace holds its chunk and no other: the chunk before it is read before the trace
  starts, and the next is launched after the trace ends. Starting and writing the trace (here
  a second each) are not decode time."""
  events = []

  @contextlib.contextmanager
  def trace():
    events.append("trace")
    time.sleep(1.0)
    yield
    time.sleep(1.0)
    events.append("end")
  generator = recorded_launches(Generator(model, max_len=64, chunk=2), events)
  result = generator.generate([[1, 2, 3]], max_new_tokens=9, params=GREEDY, trace=(1, trace))
  assert result.traced
  assert events == ["compile 2", "launch", "trace", "launch", "end", "launch", "launch"]
  assert result.stats.decode_s < 1.0


def test_a_loop_compiled_mid_generation_waits_for_the_chunk_in_flight(model):
  """6 decode steps in chunks of 4 with cache slots for 6: the last chunk is a 2-step loop,
  compiled after the first chunk is read (its compile time, left out of decode_s, is then no
  chunk's run time)."""
  events = []
  generator = recorded_launches(Generator(model, max_len=9, chunk=4), events)
  generator.generate([[1, 2, 3]], max_new_tokens=7, params=GREEDY,
                     on_tokens=lambda new: events.append("read"))
  assert events == ["read", "compile 4", "launch", "read", "compile 2", "launch", "read"]


class _Failing:
  """A compiled call that fails as XLA does (with ``message``), its memory figures the real
  executable's."""

  def __init__(self, compiled, message: str):
    self.compiled, self.message = compiled, message

  def memory_analysis(self):
    return self.compiled.memory_analysis()

  def __call__(self, *args):
    raise jax.errors.JaxRuntimeError(self.message)


def failing_phase(generator, phase: str, message: str):
  """Has ``generator``'s compiled ``phase`` ("prefill" or "decode") calls fail with
  ``message``."""
  compile_once = generator._compile

  def compile_failing(stats, key, *args, **static):
    compiled = compile_once(stats, key, *args, **static)
    return _Failing(compiled, message) if key[0] == phase else compiled
  generator._compile = compile_failing
  return generator


@pytest.mark.parametrize("phase, what, remedy", [
    ("prefill", "prefilling 3 rows of 5 tokens, 3 rows a call",
     "lower the batch, max_len=64 or prefill_tokens=16"),
    ("decode", "decoding 3 rows", "lower the batch or max_len=64")])
def test_out_of_device_memory_names_the_phase_and_its_sizes(model, phase, what, remedy):
  """XLA's out-of-memory error (a traceback from deep inside JAX) becomes one line: the phase,
  the sizes that set its memory, XLA's figures for one call and what to lower."""
  generator = failing_phase(Generator(model, max_len=64, chunk=8, prefill_tokens=16), phase,
                            "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3.44GiB."
                            "\nthe allocator's summary")
  with pytest.raises(DeviceMemoryError) as error:
    generator.generate([[1, 2, 3, 4, 5]] * 3, max_new_tokens=4, params=GREEDY)
  [stats] = [c.memory_analysis() for key, c in generator._compiled.items() if key[0] == phase]
  gib = 2**30
  assert str(error.value) == (
      f"out of device memory {what}: a call holds {stats.argument_size_in_bytes / gib:.2f} GiB "
      f"of weights, caches and inputs and needs {stats.temp_size_in_bytes / gib:.2f} GiB more; "
      f"{remedy} (XLA: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3.44GiB.)")
  assert error.value.__suppress_context__  # no traceback from inside JAX under it
  other = failing_phase(Generator(model, max_len=64), phase, "INTERNAL: something else")
  with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
    other.generate([[1, 2, 3]], max_new_tokens=4, params=GREEDY)


def test_a_traced_chunk_out_of_memory_ends_its_trace(model):
  """The trace a failing decode chunk runs in is closed before the error reaches the caller."""
  events = []

  @contextlib.contextmanager
  def trace():  # as jax.profiler.trace: stopped however its block ends
    events.append("start")
    try:
      yield
    finally:
      events.append("stop")
  generator = failing_phase(Generator(model, max_len=64, chunk=4), "decode",
                            "RESOURCE_EXHAUSTED: Out of memory")
  with pytest.raises(DeviceMemoryError, match="^out of device memory decoding 1 row: a call"):
    generator.generate([[1, 2, 3]], max_new_tokens=9, params=GREEDY, trace=(0, trace))
  assert events == ["start", "stop"]


def test_bad_arguments_fail_before_work(model, generator):
  with pytest.raises(ValueError, match="exceeds max_len=64"):
    generator.generate([[1] * 60], max_new_tokens=6)  # 65 slots: the last token needs none
  with pytest.raises(ValueError, match=r"prompts\[1\] is empty: every prompt needs at least one"):
    generator.generate([[1], []], max_new_tokens=5)
  with pytest.raises(ValueError, match="prompts is empty"):
    generator.generate([], max_new_tokens=5)
  for prompts, kind in (((p for p in [[1, 2], [3]]), "generator"), (None, "NoneType")):
    with pytest.raises(ValueError, match=f"prompts must be a list of prompts .*, got {kind}"):
      generator.generate(prompts, max_new_tokens=5)
  for prompts in (np.array([[1, 2], [3, 4]]), jnp.array([[1, 2], [3, 4]]), ([1, 2], [3])):
    generator.check_prompts(prompts, 5)  # arrays of prompts and tuples are sequences of prompts
  with pytest.raises(ValueError, match=r"prompts\[0\] must be a list of token ids, got 1"):
    generator.generate([1, 2, 3], max_new_tokens=5)  # one prompt, not wrapped in a list
  for bad in (0, 2.5):
    with pytest.raises(ValueError, match=f"max_new_tokens must be an int >= 1, got {bad}"):
      generator.generate([[1]], max_new_tokens=bad)
  for name, bad in (("chunk", 0), ("chunk", 2.5), ("max_len", 16.0), ("prefill_tokens", 0)):
    with pytest.raises(ValueError, match=f"{name} must be an int >= 1, got {bad}"):
      Generator(model, **{"max_len": 64, name: bad})
  with pytest.raises(ValueError, match=f"max_len={CFG.context_length + 1} is over the model's "
                     f"context of {CFG.context_length} tokens"):
    Generator(model, max_len=CFG.context_length + 1)
  vocab = CFG.vocab_size
  with pytest.raises(ValueError, match=rf"prompts\[1\]\[2\] = {vocab} is outside the vocabulary"):
    generator.generate([[1], [3, 4, vocab]], max_new_tokens=5)
  with pytest.raises(ValueError, match=r"prompts\[0\]\[0\] = -1 is outside"):
    generator.generate([[-1, 2]], max_new_tokens=5)
  with pytest.raises(ValueError, match=r"prompts\[0\] must be a list of token ids"):
    generator.generate([[0.5, 2]], max_new_tokens=5)
  for stop_ids, shown in (([vocab], vocab), ([3.7], 3.7), (["<|return|>"], "'<|return|>'"),
                          ([True], True)):
    with pytest.raises(ValueError, match=rf"stop_ids: {shown} is not a token id in \[0, {vocab}\)"):
      Generator(model, max_len=64, stop_ids=stop_ids)
  for stop_ids in ("503", 5):  # a string is not its characters' ids, an int not a list
    with pytest.raises(ValueError, match="stop_ids must be a sequence of token ids"):
      Generator(model, max_len=64, stop_ids=stop_ids)
  for pad_id in (-1, 2.9, None):
    with pytest.raises(ValueError, match=f"pad_id: {pad_id} is not a token id"):
      Generator(model, max_len=64, pad_id=pad_id)
  for token_limit in (0, vocab + 1, 2.0):
    with pytest.raises(ValueError, match=f"token_limit must be an int in \\[1, {vocab}\\]"):
      Generator(model, max_len=64, token_limit=token_limit)
  for seed in (2**32, -1, 1.5, None):  # PRNGKey keeps 32 bits: 2**32 would draw as 0 does
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*32\)"):
      generator.generate([[1]], max_new_tokens=2, seed=seed)
  with pytest.raises(ValueError, match="params must be a SamplingParams, got None"):
    generator.generate([[1]], max_new_tokens=2, params=None)
  # Both are first used after the prefill has run.
  with pytest.raises(ValueError, match="on_tokens must be a callable or None, got 5"):
    generator.generate([[1]], max_new_tokens=2, on_tokens=5)
  for trace in (5, (0,), (-1, contextlib.nullcontext), (0, "trace")):
    with pytest.raises(ValueError, match="trace must be \\(chunk number >= 0, a callable"):
      generator.generate([[1]], max_new_tokens=2, trace=trace)
  with pytest.raises(ValueError, match="model must be a GptOss, got str"):
    Generator("not a model", max_len=64)
  with pytest.raises(ValueError, match="params must be a SamplingParams, got {'temperature': 0}"):
    sample(jnp.zeros((1, 4)), jax.random.PRNGKey(0), {"temperature": 0})


def test_sampled_ids_stay_below_the_token_limit(model):
  """A tokenizer that knows fewer ids than the model's vocabulary: no row samples past it, from
  the prefill's token on (random weights, temperature 2: every id is likely)."""
  limit = CFG.vocab_size // 4
  tokens = Generator(model, max_len=64, chunk=8, token_limit=limit).generate(
      [[1, 2], [3]], max_new_tokens=40, params=SamplingParams(temperature=2.0)).tokens
  free = Generator(model, max_len=64, chunk=8).generate(
      [[1, 2], [3]], max_new_tokens=40, params=SamplingParams(temperature=2.0)).tokens
  assert max(max(row) for row in tokens) < limit
  assert max(max(row) for row in free) >= limit  # without the limit, ids above it do come


def test_a_prompt_and_its_tokens_fill_max_len_exactly(model):
  """16 prompt tokens and 2 new ones in 17 slots (rounded up to the cache's 32): the last token
  sampled is never fed back, so it takes no slot; the tokens are the full forward's argmax."""
  prompt = np.random.default_rng(3).integers(0, CFG.vocab_size, 16).tolist()
  generated = Generator(model, max_len=17, chunk=8).generate(
      [prompt], max_new_tokens=2, params=GREEDY).tokens[0]
  logits = np.asarray(model(jnp.asarray([prompt + generated[:1]], jnp.int32)))
  assert generated == logits[0, -2:].argmax(-1).tolist()


def test_prompts_as_arrays_are_prompts(generator):
  """A numpy prompt, even one of a single zero token, is padded like a list."""
  prompts = [np.array([0]), np.array([5, 6, 7])]
  as_lists = generator.generate([[0], [5, 6, 7]], max_new_tokens=6, params=GREEDY).tokens
  assert generator.generate(prompts, max_new_tokens=6, params=GREEDY).tokens == as_lists
  tokens, positions = left_pad(prompts, pad_id=9)
  np.testing.assert_array_equal(tokens, [[9, 9, 0], [5, 6, 7]])
  np.testing.assert_array_equal(positions, [[-1, -1, 0], [0, 1, 2]])


def test_the_last_chunk_is_whole_where_the_cache_has_room(model):
  """6 tokens to decode in chunks of 4: the second chunk runs 4 steps and keeps 2, so the loop
  compiles once; with no room for the whole chunk it runs the 2 (a second loop)."""
  prompts = [[1, 2, 3], [4, 5]]
  roomy = Generator(model, max_len=64, chunk=4)
  tokens = roomy.generate(prompts, max_new_tokens=7, params=GREEDY).tokens
  assert [k for k in roomy._compiled if k[0] == "decode"] == [("decode", 2, 4, GREEDY)]
  tight = Generator(model, max_len=9, chunk=4)  # 3 + 7 - 1 slots: none past the kept steps
  assert tight.generate(prompts, max_new_tokens=7, params=GREEDY).tokens == tokens
  assert sorted(k[2] for k in tight._compiled if k[0] == "decode") == [2, 4]
  assert all(len(row) == 7 for row in tokens)


def test_decode_rate_counts_only_decoded_tokens(model):
  """The first token of a row comes from the prefill's logits: the decode steps made the rest."""
  stats = Generator(model, max_len=64, chunk=4).generate(
      [[1, 2, 3], [4, 5]], max_new_tokens=7, params=GREEDY).stats
  assert stats.generated_tokens == 2 * 7 and stats.decode_tokens == 2 * 6
  # Two chunks: the first keeps 4 tokens a row, the second 2 of its 4 steps.
  assert stats.first_chunk_tokens == 2 * 4 and 0 < stats.first_chunk_s < stats.decode_s
  later = stats.later_chunks_tokens_per_s
  assert later == pytest.approx(2 * 2 / (stats.decode_s - stats.first_chunk_s))


def test_temperature_sharpens_or_flattens():
  """Two tokens with logits 0 and 1: token 1's share is sigmoid(1 / T), 0.88 at T = 0.5 against
  0.73 at T = 1 (4,096 draws: a standard error of 0.007)."""
  logits = jnp.zeros((4096, 2), jnp.float32).at[:, 1].set(1.0)
  for temperature in (0.5, 1.0, 2.0):
    share = float(jnp.mean(sample(logits, jax.random.PRNGKey(1),
                                  SamplingParams(temperature=temperature))))
    assert abs(share - 1 / (1 + np.exp(-1 / temperature))) < 0.03, temperature


def test_sampling_params_are_checked_and_a_tiny_temperature_is_greedy():
  logits = jnp.asarray([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]], jnp.float32)
  for temperature in (1e-30, 1e-40):  # 1e-40: a float32 denormal, which XLA flushes to 0
    for params in (SamplingParams(temperature=temperature),
                   SamplingParams(temperature=temperature, top_p=0.5, top_k=2)):
      drawn = sample(logits, jax.random.PRNGKey(0), params)
      np.testing.assert_array_equal(drawn, [2, 0])
  for bad in (dict(temperature=float("nan")), dict(temperature=float("inf")),
              dict(temperature=-1.0), dict(temperature=1e39)):  # 1e39: inf as a float32
    with pytest.raises(ValueError, match="temperature must be a number from 0 to float32's"):
      SamplingParams(**bad)
  for top_k in (1.5, -1, True):
    with pytest.raises(ValueError, match="top_k must be an int >= 0"):
      SamplingParams(top_k=top_k)


def test_sampling_filters():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(4, 50)), jnp.float32)
  key = jax.random.PRNGKey(0)
  greedy = sample(logits, key, GREEDY)
  np.testing.assert_array_equal(sample(logits, key, SamplingParams(top_k=1)), greedy)
  # 1e-39 is under float32's smallest normal: the cut's bound flushes to 0, which kept nothing.
  for top_p in (1e-6, 1e-39, 5e-324):
    np.testing.assert_array_equal(sample(logits, key, SamplingParams(top_p=top_p)), greedy)
  top3 = np.argsort(-np.asarray(logits), axis=-1)[:, :3]
  for seed in range(20):
    drawn = np.asarray(sample(logits, jax.random.PRNGKey(seed), SamplingParams(top_k=3)))
    assert all(d in row for d, row in zip(drawn, top3))
  with pytest.raises(ValueError, match=r"top_p must be a number in \(0, 1\], got 0"):
    SamplingParams(top_p=0)
  for bad in (dict(temperature=None), dict(top_p="0.5"), dict(top_p=True), dict(top_k=2.0)):
    with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
      SamplingParams(**bad)
  assert SamplingParams(top_k=np.int64(5)).top_k == 5
  for every in (50, 2 ** 40):  # a top_k of the whole vocabulary or more cuts nothing
    np.testing.assert_array_equal(sample(logits, key, SamplingParams(top_k=every)),
                                  sample(logits, key, SamplingParams()))


def test_a_huge_temperature_cuts_by_the_logits_not_the_ids():
  """A temperature of 3e38 makes every scaled logit 0 or a denormal, which XLA flushes to 0:
  the top-k cut still keeps the largest logits, drawn about uniformly, not the lowest ids."""
  logits = jnp.zeros((2, 50), jnp.float32).at[0, 47].set(10).at[0, 41].set(9)
  logits = logits.at[1, 29].set(10).at[1, 12].set(9)
  params = SamplingParams(temperature=3e38, top_k=2)
  drawn = {tuple(np.asarray(sample(logits, jax.random.PRNGKey(seed), params)))
           for seed in range(40)}
  assert {d[0] for d in drawn} == {47, 41} and {d[1] for d in drawn} == {29, 12}


def test_sampling_params_take_any_real_number_as_a_float():
  """A Fraction or a numpy scalar passes the checks; a traced division takes neither the same
  way, so the params hold Python floats."""
  params = SamplingParams(temperature=fractions.Fraction(1, 2), top_p=np.float32(0.5))
  assert type(params.temperature) is float and type(params.top_p) is float
  assert params == SamplingParams(temperature=0.5, top_p=0.5)
  logits = jnp.asarray([[0.0, 1.0, 2.0]], jnp.float32)
  assert int(jax.jit(lambda x: sample(x, jax.random.PRNGKey(0), params))(logits)[0]) == 2


@pytest.mark.parametrize("ties, params, kept", [
    (8, SamplingParams(top_k=3), 3), (8, SamplingParams(top_p=0.3), 3),  # 3 / 8 >= 0.3
    (8, SamplingParams(top_k=5, top_p=0.5), 3),  # 3 / 5
    (12, SamplingParams(top_p=0.5), 6), (10, SamplingParams(top_p=0.3), 3)])  # sums rounded
def test_sampling_cuts_ties_at_the_cut(ties, params, kept):
  """Equal logits: the cut keeps exactly the first tokens it names, not every tie, also where
  the float32 sum of the kept mass rounds just under top_p (6 / 12: 0.49999997)."""
  logits = jnp.concatenate([jnp.zeros((1, ties)), jnp.full((1, 8), -30.0)], axis=-1)
  drawn = {int(sample(logits, jax.random.PRNGKey(seed), params)[0]) for seed in range(200)}
  assert drawn == set(range(kept))
