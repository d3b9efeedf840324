"""The tiny tokenizer is deterministic and lossless; load_tokenizer finds and checks it."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxfp4_jax.generate import harmony
from mxfp4_jax.generate.tokenizer import (TINY_VOCAB_SIZE, Tokenizer, load_tokenizer,
                                          tiny_tokenizer)


def _build_tiny_json():
  tiny_tokenizer.cache_clear()
  try:
    return tiny_tokenizer().hf.to_str()
  finally:
    tiny_tokenizer.cache_clear()


def test_tiny_is_deterministic_within_and_across_processes():
  first = _build_tiny_json()
  assert _build_tiny_json() == first
  code = ("from mxfp4_jax.generate.tokenizer import tiny_tokenizer; "
          "import sys; sys.stdout.write(tiny_tokenizer().hf.to_str())")
  env = dict(os.environ, PYTHONHASHSEED="12345")
  other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout
  assert other == first


def test_tiny_vocab_and_specials():
  tok = tiny_tokenizer()
  assert tok.vocab_size == TINY_VOCAB_SIZE
  assert set(tok.special_ids) == set(harmony.SPECIAL_TOKENS)
  assert all(0 <= i < TINY_VOCAB_SIZE for i in tok.special_ids.values())
  assert max(tok.hf.get_vocab().values()) < TINY_VOCAB_SIZE
  for name, i in tok.special_ids.items():
    assert tok.encode(name) == [i]
    assert tok.token_id(name) == i
    assert tok.decode([i]) == name
    assert len(tok.encode(name, allow_special=False)) > 1


def test_decode_rejects_what_is_no_token_id():
  """The tokenizer library drops an id past the vocabulary silently; a float would truncate."""
  tok = tiny_tokenizer()
  assert tok.decode([72, np.int64(73)]) == tok.decode([72, 73])
  for bad, shown in ((600, "600"), (-1, "-1"), (72.9, "72.9"), (True, "True")):
    with pytest.raises(ValueError, match=rf"ids\[1\] = {shown} is not a token id in \[0, 512\)"):
      tok.decode([72, bad])
  for bad in (72, "H"):  # one id, or text, is not a sequence of ids
    with pytest.raises(ValueError, match="ids must be a sequence of token ids"):
      tok.decode(bad)
  with pytest.raises(TypeError, match="Tokenizer wraps a tokenizers.Tokenizer .*, got str"):
    Tokenizer("tokenizer.json")


def test_token_id_rejects_other_names():
  with pytest.raises(KeyError, match=re.escape("<|foo|>")):
    tiny_tokenizer().token_id("<|foo|>")


@given(st.text())
def test_tiny_round_trips_any_text(text):
  tok = tiny_tokenizer()
  for allow_special in (True, False):
    ids = tok.encode(text, allow_special=allow_special)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_special_tokens_in_text_and_skip_special():
  tok = tiny_tokenizer()
  text = "<|start|>user<|message|>héllo 世界 🎉<|end|>"
  ids = tok.encode(text)
  assert ids[0] == tok.token_id("<|start|>") and ids[-1] == tok.token_id("<|end|>")
  assert tok.decode(ids, skip_special=True) == "userhéllo 世界 🎉"
  assert tok.token_id("<|end|>") not in tok.encode(text, allow_special=False)


def test_tiny_merges_compress_english():
  text = "The capital of France is Paris."
  assert len(tiny_tokenizer().encode(text)) < len(text.encode()) // 2


def test_load_tokenizer_from_dir_and_original(tmp_path):
  tiny_tokenizer().hf.save(str(tmp_path / "tokenizer.json"))
  (tmp_path / "original").mkdir()
  for path in (tmp_path, tmp_path / "original", str(tmp_path)):
    tok = load_tokenizer(path)
    assert tok.special_ids == tiny_tokenizer().special_ids
    assert tok.decode(tok.encode("hi <|end|>")) == "hi <|end|>"


def test_load_tokenizer_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer.json") as info:
    load_tokenizer(tmp_path)
  assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
  # Only an original/ dir looks in the folder around it: another checkpoint's neighbour does not.
  tiny_tokenizer().hf.save(str(tmp_path / "tokenizer.json"))
  (tmp_path / "gpt-oss-20b").mkdir()
  with pytest.raises(FileNotFoundError, match="gpt-oss-20b"):
    load_tokenizer(tmp_path / "gpt-oss-20b")


def test_load_tokenizer_lacking_a_special(tmp_path):
  data = json.loads(tiny_tokenizer().hf.to_str())
  data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|call|>"]
  (tmp_path / "tokenizer.json").write_text(json.dumps(data))
  with pytest.raises(ValueError, match=r"<\|call\|>"):
    load_tokenizer(tmp_path)

