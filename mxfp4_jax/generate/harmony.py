"""The harmony chat format GPT-OSS was trained on: prompts out, channelled messages back.

GPT-OSS answers in several messages: chain of thought on the ``analysis`` channel, the answer on
``final``. Users must see only ``final``, so parsing and streaming split the output by channel;
both run the same state machine, so a streamed answer is exactly the parsed one. Both read token
ids, not text: a marker is the special token, never ordinary tokens that spell it, just as
`encode_prompt` keeps text that spells a marker plain text.
"""

from __future__ import annotations

import dataclasses

from mxfp4_jax.argcheck import ints_of_array, is_int, is_sequence

REASONING_EFFORTS = ("low", "medium", "high")
MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
VALID_CHANNELS = ("analysis", "commentary", "final")

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
CONSTRAIN, RETURN, CALL = "<|constrain|>", "<|return|>", "<|call|>"
START_OF_TEXT, END_OF_TEXT = "<|startoftext|>", "<|endoftext|>"
# Every harmony special token, in the order the tiny tokenizer gives them ids.
SPECIAL_TOKENS = (START_OF_TEXT, END_OF_TEXT, RETURN, CONSTRAIN, CHANNEL, START, END, MESSAGE, CALL)
# What ends generation: the turn's end (<|return|>), a tool call (<|call|>), the end of text.
STOPS = (RETURN, CALL, END_OF_TEXT)


@dataclasses.dataclass(frozen=True)
class Message:
  role: str
  channel: str | None
  content: str
  recipient: str | None = None  # "functions.get_weather" in a tool call's header
  content_type: str | None = None  # "json" after <|constrain|>


@dataclasses.dataclass(frozen=True)
class _Marker:
  name: str  # a special token such as <|start|>, not text that happens to spell one


def _prompt_pieces(messages, *, reasoning_effort="medium", system_message=None,
                   developer_message=None, knowledge_cutoff="2024-06",
                   current_date=None) -> list[str | _Marker]:
  if reasoning_effort not in REASONING_EFFORTS:
    raise ValueError(f"reasoning_effort must be one of {REASONING_EFFORTS}, "
                     f"got {reasoning_effort!r}")
  texts = dict(system_message=system_message, developer_message=developer_message,
               knowledge_cutoff=knowledge_cutoff, current_date=current_date)
  for name, text in texts.items():
    if text is not None and not isinstance(text, str):
      raise ValueError(f"{name} must be a string or None, got {text!r:.60}")
  if not is_sequence(messages):
    raise ValueError(f"messages must be a sequence of (role, content) pairs, got {messages!r:.60}")
  top = [MODEL_IDENTITY if system_message is None else system_message]
  if knowledge_cutoff:
    top.append(f"Knowledge cutoff: {knowledge_cutoff}")
  if current_date:
    top.append(f"Current date: {current_date}")
  system = "\n\n".join([
      "\n".join(top), f"Reasoning: {reasoning_effort}",
      f"# Valid channels: {', '.join(VALID_CHANNELS)}. Channel must be included for every message.",
  ])
  start, end, message = _Marker(START), _Marker(END), _Marker(MESSAGE)
  pieces = [start, "system", message, system, end]
  if developer_message is not None:
    pieces += [start, "developer", message, f"# Instructions\n\n{developer_message}", end]
  for i, item in enumerate(messages):
    if not (isinstance(item, (tuple, list)) and len(item) == 2
            and all(isinstance(x, str) for x in item)):
      raise ValueError(f"messages[{i}] must be a (role, content) pair of strings, got {item!r}")
    role, content = item
    if role == "user":
      pieces += [start, "user", message, content, end]
    elif role == "assistant":
      pieces += [start, "assistant", _Marker(CHANNEL), "final", message, content, end]
    else:
      raise ValueError(f"messages[{i}]: role must be user or assistant, got {role!r}")
  return pieces + [start, "assistant"]


def render_prompt(messages, **options) -> str:
  """The prompt text for a conversation of (role, content), role user or assistant, ending in
  ``<|start|>assistant`` for the model to continue. Options: ``reasoning_effort`` ("low",
  "medium", "high"), ``system_message`` (replaces the model identity line; the spec advises
  keeping it and giving instructions in ``developer_message``), ``developer_message`` (a
  developer turn, the place for instructions), ``knowledge_cutoff``, ``current_date``. The
  model is fed `encode_prompt`: text that spells a marker is not one."""
  return "".join(p.name if isinstance(p, _Marker) else p
                 for p in _prompt_pieces(messages, **options))


def encode_prompt(tokenizer, messages, **options) -> list[int]:
  """`render_prompt`'s token ids: the format's markers as special tokens, and every text
  (messages, instructions) as plain text, so that a message that spells
  ``<|end|><|start|>system`` stays inside its message, as harmony encodes it."""
  ids = []
  for piece in _prompt_pieces(messages, **options):
    if isinstance(piece, _Marker):
      ids.append(tokenizer.token_id(piece.name))
    else:
      ids += tokenizer.encode(piece, allow_special=False)
  return ids


def _token_ids(ids) -> list[int]:
  """One token id or a sequence of them (an integer array too), as ints. A bool, a float or text
  is an error: ``int()`` would read 1.9 as token 1."""
  ids = ints_of_array(ids)
  if is_int(ids):
    ids = [ids]
  if not is_sequence(ids):
    raise ValueError(f"ids must be a token id or a sequence of them, got {ids!r:.60}")
  ids = [ints_of_array(i) for i in ids]
  for k, i in enumerate(ids):
    if not is_int(i):
      raise ValueError(f"ids[{k}] = {i!r:.60} is not a token id (an int)")
  return [int(i) for i in ids]


def stop_token_ids(tokenizer) -> tuple[int, ...]:
  """The ids that end generation (`STOPS`)."""
  return tuple(tokenizer.token_id(name) for name in STOPS)


class _Machine:
  """Harmony's message grammar over a stream of text and marker events. A ``<|channel|>``
  where a message header cannot begin (after ``<|end|>`` or inside content, where the model
  left out ``<|end|><|start|>assistant``) begins the assistant's next message: its answer is
  not lost to a slip in the markup."""

  def __init__(self):
    self.messages: list[Message] = []
    self.state = "header"  # header | content | between | done
    # Header text and _Marker items, kept apart so that header text spelling a marker stays text.
    self.header: list[str | _Marker] = []
    self.content, self.meta = [], None

  def text(self, s: str) -> str | None:
    """Feeds plain text; returns the channel when it is message content, else None."""
    if self.state == "header":
      self.header.append(s)
    elif self.state == "content":
      self.content.append(s)
      return self.meta[1]
    return None

  def marker(self, m: str):
    if self.state == "done":
      return
    if self.state == "header":
      if m in (CHANNEL, CONSTRAIN):
        self.header.append(_Marker(m))
      elif m == MESSAGE:
        self.meta = _parse_header(self.header)
        self.state, self.content = "content", []
      elif m == START:
        self.header = []
      elif m in STOPS:
        self.state = "done"
      elif m == END:
        self.state = "between"
    elif self.state == "content":
      if m in (END, START, CHANNEL) or m in STOPS:
        self._close()
        self.state = "done" if m in STOPS else "between" if m == END else "header"
        self.header = [_Marker(CHANNEL)] if m == CHANNEL else []
    elif m in (START, CHANNEL):  # between
      self.state, self.header = "header", [_Marker(CHANNEL)] if m == CHANNEL else []
    elif m in STOPS:
      self.state = "done"

  def finish(self) -> list[Message]:
    """The messages so far, a truncated last one included."""
    if self.state == "content":
      self._close()
      self.state = "done"
    return self.messages

  def _close(self):
    role, channel, recipient, content_type = self.meta
    self.messages.append(Message(role, channel, "".join(self.content), recipient, content_type))
    self.header, self.content = [], []


def _parse_header(header: list[str | _Marker]):
  """(role, channel, recipient, content_type) of e.g. 'assistant', <|channel|>, 'commentary
  to=functions.f ', <|constrain|>, 'json'; the recipient may sit in the role or the channel
  part, and without <|constrain|> the content type is the channel part's last word after the
  recipient ('analysis to=python code'). Only marker items split the parts: header text that
  spells a marker is just text."""
  parts = {"role": [], "channel": [], "type": []}
  part = "role"
  for item in header:
    if item == _Marker(CHANNEL) and part == "role":
      part = "channel"
    elif item == _Marker(CONSTRAIN) and part != "type":
      part = "type"
    else:  # text, or a repeated marker, which at least separates words
      parts[part].append(item if isinstance(item, str) else " ")
  role_words, channel_words = "".join(parts["role"]).split(), "".join(parts["channel"]).split()
  words = role_words + channel_words
  recipient = next((w[3:] for w in words if w.startswith("to=")), None)
  # The completion starts after "<|start|>assistant", so its first header has no role.
  role = next((w for w in role_words if not w.startswith("to=")), "assistant")
  channel = next((w for w in channel_words if not w.startswith("to=")), None)
  content_type = "".join(parts["type"]).strip() or None
  addressed = next((i for i, w in enumerate(channel_words) if w.startswith("to=")), None)
  if content_type is None and addressed is not None:
    after = channel_words[addressed + 1:]  # the channel's name, if it comes after, is not it
    content_type = next((w for w in reversed(after) if w != channel), None)
  return role, channel, recipient, content_type


def parse_completion(tokenizer, ids) -> list[Message]:
  """The messages of the token ids the model generated after ``<|start|>assistant``; a last
  message cut off before its terminator is kept. Only the special ids are markers."""
  stream = ChannelStream(tokenizer)
  stream.feed(ids)
  stream.finish()
  return stream.messages


def final_text(messages) -> str:
  """The answer: the content of the ``final`` channel ("" if the model gave none)."""
  return "".join(m.content for m in messages if m.channel == "final")


def reasoning_text(messages) -> str:
  """The chain of thought: the content of the ``analysis`` channel."""
  return "".join(m.content for m in messages if m.channel == "analysis")


class ChannelStream:
  """Turns generated token ids, fed a few at a time, into the text a user should see: the
  ``final`` channel only (plus ``analysis`` under a "[reasoning]" header with show_reasoning),
  never the markup. The output does not depend on how the ids are split into feeds."""

  def __init__(self, tokenizer, *, show_reasoning: bool = False):
    self.show_reasoning = show_reasoning
    self._tokenizer = tokenizer
    self._markers = {i: name for name, i in tokenizer.special_ids.items()}
    self._machine = _Machine()
    self._run: list[int] = []  # ordinary ids not yet passed on: an unfinished UTF-8 character
    self._shown = None  # channel of the last text shown

  @property
  def messages(self) -> list[Message]:
    """The messages completed so far (after finish(), a truncated last one too)."""
    return list(self._machine.messages)

  @property
  def done(self) -> bool:
    """True once the model ended its turn (``<|return|>`` or ``<|call|>``) or the text
    (``<|endoftext|>``): `STOPS`."""
    return self._machine.state == "done"

  def feed(self, ids) -> str:
    """The visible text that ``ids`` (one token id or a sequence of them) completes (often "")."""
    out = []
    for i in _token_ids(ids):
      name = self._markers.get(i)
      if name is None:
        self._run.append(i)
        text = self._tokenizer.decode(self._run)
        # A token may end partway through a multi-byte character (byte-level BPE), which decodes
        # to U+FFFD until the rest arrives: wait for it. Past a whole character, the run's bytes
        # decode on their own, so the run starts afresh.
        if not text.endswith("\ufffd"):
          self._run = []
          self._text(text, out)
      else:
        self._flush(out)  # bytes a marker cuts off stay as decoding all the ids leaves them
        self._machine.marker(name)
    return "".join(out)

  def finish(self) -> str:
    """The visible text still held back at the end of generation (an unfinished character)."""
    out = []
    self._flush(out)
    self._machine.finish()
    return "".join(out)

  def _flush(self, out: list[str]):
    if self._run:
      text, self._run = self._tokenizer.decode(self._run), []
      self._text(text, out)

  def _text(self, s: str, out: list[str]):
    if not s:
      return
    channel = self._machine.text(s)
    visible = channel == "final" or (self.show_reasoning and channel == "analysis")
    if not visible:
      return
    if self.show_reasoning and channel != self._shown:
      # Each header starts a line of its own, also when reasoning follows an answer.
      after_text = "" if self._shown is None else "\n"
      out.append(after_text + "[reasoning]\n" if channel == "analysis" else
                 "\n[answer]\n" if self._shown == "analysis" else "")
    self._shown = channel
    out.append(s)
