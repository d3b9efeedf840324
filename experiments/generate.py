"""Generate text with GPT-OSS in the harmony chat format, streaming the final channel.

  python -m experiments.generate --config=configs/generate.py [--checkpoint=DIR] [--prompt=...]

See configs/generate.py for examples. Ends with a summary: load, compile, time to first token,
prefill and decode throughput, peak device memory.
"""

from __future__ import annotations

import os
import sys
import time

import jax
from absl import app, flags
from flax import nnx

from experiments import common
from mxfp4_jax.argcheck import is_int
from mxfp4_jax.device_memory import DeviceMemoryError
from mxfp4_jax.generate import harmony
from mxfp4_jax.generate.engine import Generator
from mxfp4_jax.generate.sampling import SamplingParams
from mxfp4_jax.generate.tokenizer import load_tokenizer, tiny_tokenizer
from mxfp4_jax.model import GptOss

_CONFIG = common.define_config("generate.py")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "HF, original/ or packed checkpoint dir.")
_PROMPT = flags.DEFINE_multi_string("prompt", ["What is MXFP4?"], "User message; repeat for a batch.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Tokens to generate per prompt.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 is greedy.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "0 disables top-k.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed (and random weights' seed).")
_EFFORT = flags.DEFINE_enum("reasoning_effort", "medium", harmony.REASONING_EFFORTS,
                            "Harmony reasoning effort.")
_SYSTEM = flags.DEFINE_string("system_message", None, "Replaces the default model identity line.")
_DEVELOPER = flags.DEFINE_string("developer_message", None, "Developer instructions.")
_DATE = flags.DEFINE_string("current_date", None, "A 'Current date:' line in the system message, "
                            "e.g. 2025-08-05 (gpt-oss's chat.py writes today's; harmony's "
                            "default has none).")
_STOP = flags.DEFINE_list("stop_tokens", [], "Extra stop tokens (special names or ids).")
_SHOW_REASONING = flags.DEFINE_bool("show_reasoning", False, "Also print the analysis channel.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", "", "Write a jax.profiler trace of one decode "
                                   "chunk here (open in XProf or ui.perfetto.dev).")


def _model_and_tokenizer(config, cfg):
  """The model (random unless --checkpoint; ``cfg`` is its config, a checkpoint's read without
  its weights), its tokenizer and a label for it."""
  if _CHECKPOINT.value:
    try:  # first: it takes a moment, the model minutes
      tokenizer = load_tokenizer(_CHECKPOINT.value)
    except (FileNotFoundError, ValueError) as e:
      raise app.UsageError(f"--checkpoint: {e}") from None
    _check_vocab(tokenizer, cfg.vocab_size, "--checkpoint: its model")
    model = common.load_checkpoint(_CHECKPOINT.value, "--checkpoint", config.model)
    return model, tokenizer, f"checkpoint {_CHECKPOINT.value}"
  tokenizer = tiny_tokenizer()
  _check_vocab(tokenizer, cfg.vocab_size, f"--config.model.vocab_size={cfg.vocab_size}")
  model = GptOss(cfg, rngs=nnx.Rngs(_SEED.value))
  label = (f"RANDOM WEIGHTS ({cfg.num_layers} layers, {cfg.num_experts} experts, seed "
           f"{_SEED.value}): the text is noise; "
           f"pass --checkpoint for a real model")
  return model, tokenizer, label


def _check_vocab(tokenizer, vocab_size: int, model: str) -> None:
  """A prompt's ids index the embedding, which would clamp an id past the model's vocabulary."""
  if tokenizer.vocab_size > vocab_size:
    raise app.UsageError(f"{model}: a vocabulary of {vocab_size} tokens is smaller than the "
                         f"tokenizer's {tokenizer.vocab_size}")


def _sampling_params() -> SamplingParams:
  """The sampling flags' `SamplingParams`, a bad value a one-line usage error naming its flag."""
  values = dict(temperature=_TEMPERATURE.value, top_k=_TOP_K.value, top_p=_TOP_P.value)
  for name, value in values.items():  # each alone (the others default), to name its flag
    try:
      SamplingParams(**{name: value})
    except ValueError as e:
      raise app.UsageError(f"--{name}: {e}") from None
  if values["temperature"] == 0 and (values["top_k"] or values["top_p"] < 1):
    raise app.UsageError("--top_k and --top_p filter sampled tokens; with --temperature=0 "
                         "(greedy) they do nothing: pass a temperature > 0")
  return SamplingParams(**values)


def _stop_ids(tokenizer) -> list[int]:
  ids = list(harmony.stop_token_ids(tokenizer))
  for token in _STOP.value:
    if token.isdecimal() and int(token) < tokenizer.vocab_size:
      ids.append(int(token))
    elif token in tokenizer.special_ids:
      ids.append(tokenizer.token_id(token))
    else:
      raise app.UsageError(f"--stop_tokens: {token!r} is neither a token id below "
                           f"{tokenizer.vocab_size} nor one of {sorted(tokenizer.special_ids)}")
  return ids


class _Printer:
  """Streams each row's final-channel text as chunks of tokens arrive."""

  def __init__(self, tokenizer, rows: int):
    self.tokenizer, self.ids = tokenizer, [[] for _ in range(rows)]
    self.streams = [harmony.ChannelStream(tokenizer, show_reasoning=_SHOW_REASONING.value)
                    for _ in range(rows)]

  def __call__(self, new_tokens: list[list[int]]) -> None:
    for row, tokens in enumerate(new_tokens):
      self.ids[row].extend(tokens)
      self._show(row, self.streams[row].feed(tokens))

  def _show(self, row: int, shown: str) -> None:
    if shown:
      prefix = f"[{row}] " if len(self.ids) > 1 else ""
      sys.stdout.write(prefix + shown)
      sys.stdout.flush()

  def finish(self) -> None:
    for row, stream in enumerate(self.streams):
      self._show(row, stream.finish())  # an unfinished character held back at the end
      if not harmony.final_text(stream.messages):
        raw = self.tokenizer.decode(self.ids[row])[:200]  # !r shows its newlines as \n
        print(f"\n[{row}] no final-channel text; the raw completion begins: {raw!r}")
    print()


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  # The flags are checked before the model is built or loaded (minutes for a real one).
  params = _sampling_params()
  common.seed("--seed", _SEED.value)  # Generator.generate's range, before the model is built
  common.positive("--max_new_tokens", _MAX_NEW.value)
  # Unset, the Generator's own default.
  prefill = {} if config.prefill_tokens is None else {"prefill_tokens": config.prefill_tokens}
  for name in ("max_len", "chunk", *prefill):
    common.positive(f"--config.{name}", config[name])
  cfg = common.model_config(config.model)  # a checkpoint takes its runtime fields
  if _CHECKPOINT.value:
    if not os.path.isdir(_CHECKPOINT.value):
      raise app.UsageError(f"--checkpoint: {_CHECKPOINT.value} is not a directory")
    cfg = common.checkpoint_config(_CHECKPOINT.value, "--checkpoint", config.model)
  common.within_context("--config.max_len", config.max_len, cfg)
  if _PROFILE_DIR.value:
    common.check_dir_to_write("--profile_dir", _PROFILE_DIR.value)
  if _PROFILE_DIR.value and not (is_int(config.profile_chunk) and config.profile_chunk >= 0):
    raise app.UsageError(f"--config.profile_chunk must be a decode chunk's index >= 0, got "
                         f"{config.profile_chunk!r}")
  common.gpu_memory_fraction(config.gpu_memory_fraction, "--config.gpu_memory_fraction")
  common.check_kernels_run_here(cfg)
  decode_options = common.compiler_options(config.decode_compiler_options,
                                           "--config.decode_compiler_options")
  start = time.perf_counter()
  model, tokenizer, label = _model_and_tokenizer(config, cfg)
  load_s = time.perf_counter() - start
  cfg = model.cfg
  print(f"model: {label}; {cfg.dtype}, experts {cfg.resolved_moe_backend}, attention "
        f"{cfg.resolved_attention_backend}, router {cfg.resolved_router_backend}; device "
        f"{common.device_description()}")

  prompts = [harmony.encode_prompt(
      tokenizer, [("user", text)], reasoning_effort=_EFFORT.value, system_message=_SYSTEM.value,
      developer_message=_DEVELOPER.value, current_date=_DATE.value) for text in _PROMPT.value]
  trace = None
  if _PROFILE_DIR.value:
    trace = (config.profile_chunk,
             lambda: jax.profiler.trace(_PROFILE_DIR.value, create_perfetto_trace=True))
  generator = Generator(model, max_len=config.max_len, stop_ids=_stop_ids(tokenizer),
                        pad_id=tokenizer.token_id(harmony.END_OF_TEXT), chunk=config.chunk,
                        token_limit=min(tokenizer.vocab_size, model.cfg.vocab_size),
                        decode_compiler_options=decode_options, **prefill)
  try:  # the ids are in the vocabulary (_check_vocab): what can fail is the length
    generator.check_prompts(prompts, _MAX_NEW.value)
  except ValueError as e:
    raise app.UsageError(f"--config.max_len: {e} (or lower --max_new_tokens)") from None
  printer = _Printer(tokenizer, len(prompts))
  try:
    result = generator.generate(prompts, max_new_tokens=_MAX_NEW.value, params=params,
                                seed=_SEED.value, on_tokens=printer, trace=trace)
  except DeviceMemoryError as e:  # the batch is the --prompt count
    printer.finish()
    raise app.UsageError(f"--prompt, --config.max_len, --config.prefill_tokens: {e}") from None
  printer.finish()

  s = result.stats
  memory = f"{s.peak_memory_bytes / 2**30:.2f} GiB" if s.peak_memory_bytes else "n/a on this device"
  later = (f"; {s.later_chunks_tokens_per_s:,.1f} tok/s after the first chunk"
           if s.later_chunks_tokens_per_s else "")
  print(f"summary: load {load_s:.2f} s | compile {s.compile_s:.2f} s | time to first token "
        f"{s.prefill_s * 1e3:.1f} ms | prefill {s.prefill_tokens_per_s:,.0f} tok/s "
        f"({s.prompt_tokens} tokens) | decode {s.decode_tokens_per_s:,.1f} tok/s "
        f"({s.decode_tokens} tokens, batch {len(prompts)}{later}) | peak device memory {memory}")
  if _PROFILE_DIR.value and result.traced:
    print(f"trace: {_PROFILE_DIR.value} (decode chunk {config.profile_chunk})")
  elif _PROFILE_DIR.value:
    print(f"no trace: generation ended before decode chunk {config.profile_chunk} "
          "(lower --config.profile_chunk, or raise --max_new_tokens)")


if __name__ == "__main__":
  app.run(main)
