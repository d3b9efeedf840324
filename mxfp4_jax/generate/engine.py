"""Batched generation: a jitted prefill (in row groups of at most `PREFILL_TOKENS` padded prompt
tokens, or one row a call where a row alone is longer: `prefill_rows`), then decoding in
on-device loops of `chunk` steps.

Prompts of different lengths are left-padded to the longest: every row then writes its KV cache
slot at the same global step, and padding is marked by position -1, which attention never sees.
Each step's sampling key is ``fold_in(seed, step)``, the step counted in the padded batch, so
samples do not depend on the chunk size. They do depend on the batch: a step draws one sample for
every row from its key, so a prompt's draws change with the batch's longest prompt and with the
prompt's row. Greedy tokens use no key, but a batch's other rows can change the bf16 rounding of
a row's logits and so break a near-tie the other way.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mxfp4_jax.argcheck import ints_of_array, is_int, is_sequence
from mxfp4_jax.device_memory import naming_out_of_memory
from mxfp4_jax.generate.sampling import SamplingParams, sample
from mxfp4_jax.model.gpt_oss import GptOss


# Prompt tokens per prefill call. Its activations grow with rows x length, so larger batches
# prefill a group of rows at a time, each call writing its rows into the batch's caches in place.
# On an 80 GB H100 at batch 256 and a 1k context (BENCHMARKS.md, forty-second round): GPT-OSS-120B
# fits with 8k-token calls (74.14 GiB peak) and runs out of memory with 32k, whose call needs
# 3.89 GiB of temporaries beside its 72.31 GiB of weights and caches (0.97 GiB with 8k; XLA's
# figures, forty-third round); GPT-OSS-20B's prefill takes 4.16 s with 8k (22.19 GiB peak),
# 3.85 s with 32k (24.41 GiB) and 4.46 s with 4k.
PREFILL_TOKENS = 1 << 13
# XLA options the decode loop compiles with for batches of two or more rows, unless a Generator
# is given others. Concurrent command-buffer scheduling runs a step's independent small kernels
# side by side; on an H100, end to end, alternated pairs: 20b batch 8 +2.2 to +3.1%, batch 64
# -0.1 to +1.7%, batch 256 +0.9 and +1.1%; at batch 1 nothing to gain: 20b -1.8 to +0.7% (-0.4%
# the mean of five), 120b -2.0 to +1.8% (+0.3%) (BENCHMARKS.md, thirty-eighth to fortieth
# rounds). Off a GPU it does nothing.
DECODE_COMPILER_OPTIONS = {"xla_gpu_command_buffer_scheduling_mode": "CONCURRENT"}


def prefill_rows(batch: int, length: int, max_tokens: int = PREFILL_TOKENS) -> int:
  """Rows per prefill call: as few calls as rows x length <= max_tokens allows (at least one
  row a call), their rows as even as can be. Every call has this shape, so it compiles once a
  batch size (the batch's caches are among its arguments);
  where the calls' rows pass the batch, the last call takes the batch's last rows, some of which
  the call before it prefilled too (e.g. 257 prompts of 1k tokens: 33 calls of 8 rows, the last
  from row 249, its first 7 rows prefilled twice). `prefill_starts` gives each call's first row."""
  limit = max(1, max_tokens // max(1, length))
  calls = -(-batch // limit)
  return -(-batch // calls)


def prefill_starts(batch: int, rows: int) -> list[int]:
  """The first row of each prefill call of ``rows`` rows (`prefill_rows`)."""
  return [*range(0, batch - rows, rows), batch - rows]


@dataclasses.dataclass
class GenerationStats:
  prompt_tokens: int = 0
  generated_tokens: int = 0  # the first token of each row included (the prefill samples it)
  decode_tokens: int = 0  # decoded tokens the rows kept (up to a stop, not the pads after it)
  compile_s: float = 0.0
  prefill_s: float = 0.0  # the compiled prefill, up to the first token on the host
  # From the first decode chunk's launch to the last chunk's tokens on the host, less compiling
  # and tracing: a last chunk's dropped steps included
  decode_s: float = 0.0
  # The first decode chunk's share: the tokens kept from it and the time to them on the host,
  # which holds the loop's first launch (in a fresh process, its loading onto the device too).
  first_chunk_tokens: int = 0
  first_chunk_s: float = 0.0
  peak_memory_bytes: int | None = None

  @property
  def prefill_tokens_per_s(self) -> float:
    return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

  @property
  def decode_tokens_per_s(self) -> float:
    return self.decode_tokens / self.decode_s if self.decode_s else 0.0

  @property
  def later_chunks_tokens_per_s(self) -> float:
    """The decode rate after the first chunk; 0 with one chunk."""
    tokens = self.decode_tokens - self.first_chunk_tokens
    seconds = self.decode_s - self.first_chunk_s
    return tokens / seconds if tokens > 0 and seconds > 0 else 0.0


@dataclasses.dataclass
class Generation:
  tokens: list[list[int]]  # per prompt, the generated ids up to and including a stop token
  stats: GenerationStats
  traced: bool = False  # whether the decode chunk ``trace`` named ran (it may stop before)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """-> tokens [B, T] and positions [B, T] (-1 on padding)."""
  longest = max(len(p) for p in prompts)
  tokens = np.full((len(prompts), longest), pad_id, np.int32)
  positions = np.full((len(prompts), longest), -1, np.int32)
  for row, prompt in enumerate(prompts):
    tokens[row, longest - len(prompt):] = prompt
    positions[row, longest - len(prompt):] = np.arange(len(prompt))
  return tokens, positions


def _rows(count: int) -> str:
  return f"{count} row{'s' if count != 1 else ''}"


def _check_count(name: str, value) -> None:
  if not is_int(value) or value < 1:
    raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _identity(x):
  """The trivial function options are tried on: one function, so that options checked once (by
  an experiment's flag, then by each `Generator`) compile once."""
  return x


def check_compiler_options(options, name: str = "decode_compiler_options") -> dict:
  """``options`` (XLA option name -> a str, bool, int or float value: `jax.jit`'s
  ``compiler_options``) as a dict, tried on a trivial compile so that a name XLA does not know or
  a value it cannot parse is a ValueError naming ``name``, not a failure at the first generation.
  XLA keeps every backend's options in one set, so GPU options check on any backend."""
  if options is None:
    return {}
  if not (isinstance(options, Mapping) and all(isinstance(k, str) for k in options)):
    raise ValueError(f"{name} must map XLA option names to values, got {options!r:.60}")
  options = dict(options)
  for key, value in options.items():
    if not isinstance(value, (str, bool, int, float)):
      raise ValueError(f"{name}: {key} must be a str, bool, int or float, got {value!r:.60}")
  if options:
    try:
      jax.jit(_identity, compiler_options=options).lower(0).compile()
    except jax.errors.JaxRuntimeError as e:
      raise ValueError(f"{name}: {str(e).splitlines()[0]}") from None
  return options


def _check_ids(name: str, ids: list, limit: int) -> None:
  for i in ids:
    if not (is_int(i) and 0 <= i < limit):
      raise ValueError(f"{name}: {i!r} is not a token id in [0, {limit})")


class Generator:
  """Generates from a `GptOss` with static KV caches of ``max_len`` slots.

  ``token_limit``: sampling draws only ids below it (default: the model's vocabulary). A
  tokenizer may know fewer ids than the model's padded vocabulary (GPT-OSS's o200k_harmony
  200,019 of 201,088), and a sampled id it does not know could not be decoded.

  ``prefill_tokens``: prompt tokens a prefill call takes (at least one prompt a call;
  `PREFILL_TOKENS`): fewer take less memory for activations and more calls.

  ``decode_compiler_options``: XLA options for the decode loop alone (`check_compiler_options`)
  at every batch size; None: `DECODE_COMPILER_OPTIONS` for batches of two or more rows, none at
  batch 1.
  """

  def __init__(self, model: GptOss, *, max_len: int, stop_ids: Sequence[int] = (),
               pad_id: int = 0, chunk: int = 16, prefill_tokens: int = PREFILL_TOKENS,
               token_limit: int | None = None,
               decode_compiler_options: Mapping[str, str | bool | int | float] | None = None):
    if not isinstance(model, GptOss):
      raise ValueError(f"model must be a GptOss, got {type(model).__name__}")
    vocab = model.cfg.vocab_size
    for name, value in (("max_len", max_len), ("chunk", chunk), ("prefill_tokens", prefill_tokens)):
      _check_count(name, value)
    if max_len > model.cfg.context_length:
      raise ValueError(f"max_len={max_len} is over the model's context of "
                       f"{model.cfg.context_length} tokens")
    token_limit = vocab if token_limit is None else token_limit
    if not (is_int(token_limit) and 1 <= token_limit <= vocab):
      raise ValueError(f"token_limit must be an int in [1, {vocab}], got {token_limit!r}")
    stop_ids, pad_id = ints_of_array(stop_ids), ints_of_array(pad_id)  # e.g. jnp.array ids
    if not is_sequence(stop_ids):
      raise ValueError(f"stop_ids must be a sequence of token ids, got {stop_ids!r:.60}")
    # Read once (an iterator would be empty at its next use), JAX scalars as ints.
    stop_ids = [ints_of_array(i) for i in stop_ids]
    _check_ids("pad_id", [pad_id], vocab)
    _check_ids("stop_ids", stop_ids, vocab)
    by_default = decode_compiler_options is None
    decode_compiler_options = check_compiler_options(
        DECODE_COMPILER_OPTIONS if by_default else decode_compiler_options)
    self.graphdef, self.state = nnx.split(model)
    # Python ints from here on (a NumPy int passes the checks): the cache takes a Python int.
    self.cfg, self.max_len, self.token_limit = model.cfg, int(max_len), int(token_limit)
    self.stop_ids = jnp.asarray(sorted(set(stop_ids)) or [-1], jnp.int32)
    self._host_stop_ids = frozenset(int(t) for t in stop_ids)  # a device array's `in` syncs
    self.pad_id, self.chunk, self.prefill_tokens = int(pad_id), int(chunk), int(prefill_tokens)
    self._init_cache = model.init_cache  # reads only the config: no weights in the jits
    self._empty = jax.jit(self._empty_fn, static_argnums=0)
    self._prefill = jax.jit(self._prefill_fn, donate_argnums=(1, 2))
    self._sample = jax.jit(self._sample_fn, static_argnames=("params",))
    decode_jit = lambda options: jax.jit(self._decode_fn, static_argnames=("steps", "params"),
                                         donate_argnums=(1,), compiler_options=options or None)
    self._decode = decode_jit(decode_compiler_options)
    self._decode_one_row = decode_jit({}) if by_default else self._decode
    self._compiled: dict[tuple, Callable] = {}  # by shapes and static arguments

  def decode_loop(self, batch: int):
    """The jitted decode loop `generate` runs for ``batch`` rows (its compiler options depend on
    the batch: `DECODE_COMPILER_OPTIONS`)."""
    return self._decode_one_row if batch == 1 else self._decode

  def _compile(self, stats: GenerationStats, key: tuple, jitted, *args, **static):
    """Compiles once per key, timing the compilation into ``stats``."""
    if key not in self._compiled:
      start = time.perf_counter()
      self._compiled[key] = jitted.lower(*args, **static).compile()
      stats.compile_s += time.perf_counter() - start
    return self._compiled[key]

  def _model(self, state) -> GptOss:
    return nnx.merge(self.graphdef, state)

  def _empty_fn(self, batch: int):
    """The batch's last logits [B, V] and empty caches, for its prefill calls to fill in."""
    return (jnp.zeros((batch, self.cfg.vocab_size), jnp.float32),
            self._init_cache(batch, self.max_len))

  def _prefill_fn(self, state, logits, caches, tokens, positions, first_row):
    """One prefill call: ``tokens`` [R, T] into rows ``first_row`` .. ``first_row + R - 1`` of
    the batch's logits and caches, which are donated and updated in place, so that a batch's
    caches are never held twice (as calls' pieces and then joined)."""
    model = self._model(state)
    own_caches = self._init_cache(tokens.shape[0], self.max_len)
    own_logits, own_caches = model.forward(tokens, positions, own_caches, start=0, last_only=True)
    put = lambda whole, part: jax.lax.dynamic_update_slice_in_dim(whole, part, first_row, axis=0)
    return put(logits, own_logits[:, -1]), jax.tree.map(put, caches, own_caches)

  def _sample_fn(self, logits, key, *, params: SamplingParams):
    return sample(logits[:, :self.token_limit], key, params)

  def _decode_fn(self, state, caches, token, position, done, step, key, *, steps: int,
                 params: SamplingParams):
    """``steps`` decode steps in one on-device loop. Its trip count is static: a loop that
    stopped once every row is done would need its condition on the host before each step, and
    the GPU would idle while the host reads it and launches the next step. Rows that are done
    emit the pad token; the host stops between chunks."""
    model = self._model(state)
    out = jnp.full((token.shape[0], steps), self.pad_id, jnp.int32)

    def body(i, carry):
      caches, token, position, done, out = carry
      logits, caches = model.forward(token[:, None], position[:, None], caches, start=step + i)
      next_token = self._sample_fn(logits[:, 0], jax.random.fold_in(key, step + i), params=params)
      next_token = jnp.where(done, self.pad_id, next_token)
      out = out.at[:, i].set(next_token)
      done = done | jnp.isin(next_token, self.stop_ids)
      return caches, next_token, position + 1, done, out

    return jax.lax.fori_loop(0, steps, body, (caches, token, position, done, out))

  def check_prompts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> None:
    """Raises ValueError, before any work, when the prompts cannot be generated from: the
    embedding would take an id outside the vocabulary without a word (XLA clamps the index)."""
    if not isinstance(prompts, (Sequence, np.ndarray, jax.Array)):  # a generator would be used up
      raise ValueError(f"prompts must be a list of prompts (lists of token ids), got "
                       f"{type(prompts).__name__}")
    if len(prompts) == 0:
      raise ValueError("prompts is empty: pass at least one prompt (a list of token ids)")
    vocab = self.cfg.vocab_size
    for row, prompt in enumerate(prompts):
      ids = np.asarray(prompt)
      if ids.ndim == 1 and ids.size == 0:
        raise ValueError(f"prompts[{row}] is empty: every prompt needs at least one token")
      if not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 1:
        raise ValueError(f"prompts[{row}] must be a list of token ids, got {prompt!r:.60}")
      outside = np.flatnonzero((ids < 0) | (ids >= vocab))
      if outside.size:
        raise ValueError(f"prompts[{row}][{outside[0]}] = {ids[outside[0]]} is outside the "
                         f"vocabulary [0, {vocab})")
    _check_count("max_new_tokens", max_new_tokens)
    longest = max(len(p) for p in prompts)
    # The last token sampled is never fed back, so it needs no cache slot.
    if longest + max_new_tokens - 1 > self.max_len:
      raise ValueError(f"prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds "
                       f"max_len={self.max_len}")

  def generate(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
               params: SamplingParams = SamplingParams(), seed: int = 0,
               on_tokens: Callable[[list[list[int]]], None] | None = None,
               trace: tuple[int, Callable[[], contextlib.AbstractContextManager]] | None = None,
               ) -> Generation:
    """``on_tokens`` gets each chunk's new tokens per row (nothing after a row's stop token).
    ``trace=(chunk, context)`` runs decode chunk number ``chunk`` inside ``context()``, e.g. a
    `jax.profiler.trace`. Where the device runs out of memory, a
    `mxfp4_jax.device_memory.DeviceMemoryError` names the phase (the prefill or the decode loop)
    and its sizes."""
    self.check_prompts(prompts, max_new_tokens)
    if not isinstance(params, SamplingParams):
      raise ValueError(f"params must be a SamplingParams, got {params!r:.60}")
    if not (is_int(seed) and 0 <= seed < 2**32):  # PRNGKey keeps 32 bits: 2**32 would alias 0
      raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    # Both are first used after the prefill has compiled and run: checked now.
    if on_tokens is not None and not callable(on_tokens):
      raise ValueError(f"on_tokens must be a callable or None, got {on_tokens!r:.60}")
    if trace is not None and not (isinstance(trace, tuple) and len(trace) == 2
                                  and is_int(trace[0]) and trace[0] >= 0 and callable(trace[1])):
      raise ValueError("trace must be (chunk number >= 0, a callable that returns a context "
                       f"manager) or None, got {trace!r:.60}")
    stats = GenerationStats(prompt_tokens=sum(len(p) for p in prompts))
    tokens, positions = left_pad(prompts, self.pad_id)
    key = jax.random.PRNGKey(seed)

    batch = len(prompts)
    rows = prefill_rows(*tokens.shape, self.prefill_tokens)
    empty = self._compile(stats, ("empty", batch), self._empty, batch)
    filled = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), empty.out_info)
    prefill = self._compile(stats, ("prefill", batch, rows, tokens.shape[1]), self._prefill,
                            self.state, *filled, tokens[:rows], positions[:rows], np.int32(0))
    first_key = jax.random.fold_in(key, tokens.shape[1] - 1)
    sample_first = self._compile(stats, ("sample", batch, params), self._sample, filled[0],
                                 first_key, params=params)
    start = time.perf_counter()
    with naming_out_of_memory(
        f"prefilling {_rows(batch)} of {tokens.shape[1]} tokens, {_rows(rows)} a call",
        lambda: prefill,
        f"lower the batch, max_len={self.max_len} or prefill_tokens={self.prefill_tokens}"):
      last_logits, caches = empty()  # [B, V] float32; caches: batch is axis 0
      for row in prefill_starts(batch, rows):
        last_logits, caches = prefill(self.state, last_logits, caches, tokens[row:row + rows],
                                      positions[row:row + rows], np.int32(row))
      first = np.asarray(sample_first(last_logits, first_key))
    del last_logits  # [B, V] float32: 206 MB at batch 256, not to be held through the decode
    stats.prefill_s = time.perf_counter() - start

    generated = [[int(t)] for t in first]
    done = np.isin(first, list(self._host_stop_ids))
    if on_tokens:
      on_tokens([list(g) for g in generated])
    carry = (caches, jnp.asarray(first), jnp.asarray(positions[:, -1] + 1),
             jnp.asarray(done))
    step, remaining = tokens.shape[1], max_new_tokens - 1
    # Chunks launched and not yet read, oldest first: (tokens, steps kept, traced). The next
    # chunk is launched before the host waits for the one in flight, so that the GPU does not
    # idle while the host launches a loop, reads its tokens and streams them. A traced chunk
    # runs alone, and a chunk whose loop must compile first waits for those in flight: the
    # time decode_s leaves out (compiling, starting and writing a trace) is then GPU idle time.
    in_flight: collections.deque = collections.deque()
    chunk_index, traced = 0, False
    is_traced = lambda index: trace is not None and trace[0] == index

    def next_steps():
      # Whole chunks while the cache has slots for them: a shorter last chunk would compile a
      # second loop (its trip count is static). The steps past ``remaining`` are dropped.
      whole = remaining >= self.chunk or step + self.chunk <= self.max_len
      return self.chunk if whole else remaining

    def may_launch():
      if remaining <= 0 or done.all() or len(in_flight) == 2:
        return False
      if not in_flight:
        return True
      compiled = ("decode", batch, next_steps(), params) in self._compiled
      return compiled and not (in_flight[-1][2] or is_traced(chunk_index))

    compiled_before, tracing_s = stats.compile_s, 0.0
    start = time.perf_counter()
    steps = None  # the last loop launched: its figures are those an error reports
    with (naming_out_of_memory(f"decoding {_rows(batch)}",
                                lambda: self._compiled.get(("decode", batch, steps, params)),
                                f"lower the batch or max_len={self.max_len}"),
          contextlib.ExitStack() as tracing):
      while True:
        while may_launch():
          steps = next_steps()
          decode = self._compile(stats, ("decode", batch, steps, params), self.decode_loop(batch),
                                 self.state, *carry, jnp.int32(step), key, steps=steps,
                                 params=params)
          if is_traced(chunk_index):
            begin = time.perf_counter()
            tracing.enter_context(trace[1]())
            tracing_s += time.perf_counter() - begin
            traced = True
          *carry, out = decode(self.state, *carry, jnp.int32(step), key)
          in_flight.append((out, min(steps, remaining), is_traced(chunk_index)))
          step, remaining, chunk_index = step + steps, remaining - steps, chunk_index + 1
        if not in_flight:
          break
        out, kept, was_traced = in_flight.popleft()
        out = np.asarray(out)[:, :kept]
        stats.decode_s = (time.perf_counter() - start - (stats.compile_s - compiled_before)
                          - tracing_s)
        if was_traced:
          begin = time.perf_counter()
          tracing.close()
          tracing_s += time.perf_counter() - begin
        new = [[] for _ in range(batch)]
        for row in range(batch):
          if not done[row]:
            for t in out[row]:
              new[row].append(int(t))
              if t in self._host_stop_ids:
                done[row] = True
                break
            generated[row].extend(new[row])
        if not stats.first_chunk_s:
          stats.first_chunk_s, stats.first_chunk_tokens = stats.decode_s, sum(map(len, new))
        if on_tokens:
          on_tokens(new)
        if done.all():
          break
    # A chunk launched before every row had stopped runs on, unread: it is waited for here, so
    # that it does not run into the caller's next timing.
    jax.block_until_ready([chunk[0] for chunk in in_flight])
    stats.generated_tokens = sum(len(g) for g in generated)
    stats.decode_tokens = stats.generated_tokens - batch
    stats.peak_memory_bytes = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    return Generation(tokens=generated, stats=stats, traced=traced)
