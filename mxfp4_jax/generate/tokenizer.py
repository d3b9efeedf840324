"""GPT-OSS tokenizers: the checkpoint's ``tokenizer.json`` or a tiny one built in code.

Both are HF ``tokenizers`` objects behind one small class, so the harmony format and whoever
sets the generator's stop and pad ids look special tokens up by name and never hard-code
o200k_harmony ids (the tiny tokenizer puts them elsewhere).
"""

from __future__ import annotations

import functools
import operator
import os

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from mxfp4_jax.argcheck import is_sequence
from mxfp4_jax.generate import harmony

TINY_VOCAB_SIZE = 512

# Training text for the tiny tokenizer's merges: harmony boilerplate and plain English, so that
# prompts for the tiny model take few tokens. Changing it changes the tiny tokenizer's ids.
_TINY_CORPUS = """\
You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
Current date: 2025-06-28

Reasoning: low
Reasoning: medium
Reasoning: high

# Valid channels: analysis, commentary, final. Channel must be included for every message.
# Instructions

Answer the question in one short sentence. Be helpful, honest and kind.
system developer user assistant analysis commentary final

What is the capital of France? The capital of France is Paris.
What is 2 + 2? 2 + 2 = 4. What about 9 / 2? That is 4.5.
The user asks a simple question. We should answer with the number and nothing else.
Tell me a story about a small robot who wanted to see the sea. Once upon a time there was a
little robot that lived in a quiet town far from the water. Every morning it looked at the old
map on the wall and dreamed of the blue line at the edge of the world. One day it packed a bag,
said goodbye to its friends, and started to walk. The road was long and the nights were cold,
but the robot kept going, because the people it met along the way told it that the sea was
worth the trip. When it finally reached the shore, the waves were louder and brighter than it
had ever imagined, and it stood there for a long time, listening.

Explain how a mixture of experts works. A router looks at each token and picks a few experts
for it; only those experts run, so the model can be very large while each token pays for a
small part of it. The weights of the experts are stored in a compact four bit format with one
shared scale for every block of thirty two values, and they are decoded right before the
matrix multiply.

Write a function that returns the sum of a list of numbers.
def total(numbers):
    return sum(numbers)

Thanks! You're welcome. Let me know if there is anything else I can help you with.
"""


class Tokenizer:
  """An HF tokenizer plus the harmony special ids; encodes and decodes without surprises."""

  def __init__(self, hf: tokenizers.Tokenizer):
    if not isinstance(hf, tokenizers.Tokenizer):
      raise TypeError(f"Tokenizer wraps a tokenizers.Tokenizer (see load_tokenizer), got "
                      f"{type(hf).__name__}")
    present = {t.content for t in hf.get_added_tokens_decoder().values()}
    for name in harmony.SPECIAL_TOKENS:
      if name not in present:
        raise ValueError(f"tokenizer lacks the harmony special token {name}")
    self.hf = hf
    self.special_ids = {name: hf.token_to_id(name) for name in harmony.SPECIAL_TOKENS}
    # A twin that reads special-token text as plain text, for encode(allow_special=False).
    self._plain = tokenizers.Tokenizer.from_str(hf.to_str())
    self._plain.encode_special_tokens = True

  @property
  def vocab_size(self) -> int:
    return self.hf.get_vocab_size(with_added_tokens=True)

  def token_id(self, special_name: str) -> int:
    """The id of a harmony special token such as ``<|end|>``."""
    try:
      return self.special_ids[special_name]
    except KeyError:
      raise KeyError(f"not a harmony special token: {special_name!r}") from None

  def encode(self, text: str, allow_special: bool = True) -> list[int]:
    """Token ids of ``text``; with allow_special=False, ``<|end|>`` etc. in it are plain text."""
    hf = self.hf if allow_special else self._plain
    return hf.encode(text, add_special_tokens=False).ids

  def decode(self, ids, skip_special: bool = False) -> str:
    """Text of token ``ids``; an id that is no integer in [0, vocab_size) is an error (the
    tokenizer library drops ids past the vocabulary silently)."""
    if not is_sequence(ids):
      raise ValueError(f"ids must be a sequence of token ids, got {ids!r:.60}")
    ids, vocab = list(ids), self.vocab_size
    for i, token in enumerate(ids):
      try:
        ids[i] = operator.index(token)
      except TypeError:
        ids[i] = None
      if isinstance(token, bool) or ids[i] is None or not 0 <= ids[i] < vocab:
        raise ValueError(f"ids[{i}] = {token!r} is not a token id in [0, {vocab})")
    return self.hf.decode(ids, skip_special_tokens=skip_special)


def tokenizer_dirs(checkpoint_dir) -> list[str]:
  """Where a checkpoint's tokenizer files are: its dir, then for an ``original/`` dir the HF
  repo around it."""
  checkpoint_dir = os.path.normpath(os.fspath(checkpoint_dir))
  if os.path.basename(checkpoint_dir) == "original":
    return [checkpoint_dir, os.path.dirname(checkpoint_dir)]
  return [checkpoint_dir]


def load_tokenizer(checkpoint_dir) -> Tokenizer:
  """The ``tokenizer.json`` of a checkpoint (`tokenizer_dirs`)."""
  candidates = [os.path.join(d, "tokenizer.json") for d in tokenizer_dirs(checkpoint_dir)]
  for path in candidates:
    if os.path.isfile(path):
      try:
        hf = tokenizers.Tokenizer.from_file(path)
      except Exception as e:  # the Rust binding raises a bare Exception
        raise ValueError(f"{path}: not a readable tokenizer.json ({e})") from None
      return Tokenizer(hf)
  raise FileNotFoundError(f"no tokenizer.json at {' or '.join(candidates)}")


@functools.cache
def tiny_tokenizer() -> Tokenizer:
  """A byte-level BPE of TINY_VOCAB_SIZE ids, the last nine the harmony specials; any text
  round trips. Built in code by deterministic training, for the tiny random model."""
  hf = tokenizers.Tokenizer(models.BPE())
  hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  hf.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=TINY_VOCAB_SIZE - len(harmony.SPECIAL_TOKENS), show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  hf.train_from_iterator([_TINY_CORPUS], trainer)
  hf.add_special_tokens([tokenizers.AddedToken(name, special=True, normalized=False)
                         for name in harmony.SPECIAL_TOKENS])
  return Tokenizer(hf)
