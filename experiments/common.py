"""What every experiment shares: the ``--config`` flag, the results folder, the device summary.

Each experiment is an absl program whose settings come from one ml_collections ``get_config()``
file under ``configs/``; any field can be overridden on the command line::

    python -m experiments.bench_kernel --config=configs/bench_kernel.py --config.rows=16,64
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import importlib
import json
import math
import os
import pathlib

import jax
from absl import app, flags
from ml_collections import config_flags

from mxfp4_jax.argcheck import is_int, is_real

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def define_config(default: str, help_string: str = "ml_collections config file."):
  """The ``--config`` flag, defaulting to ``configs/<default>``; returns its FlagHolder. A second
  experiment module imported into the same process (tests import their helpers) shares the
  flag defined first instead of failing on a duplicate."""
  if "config" in flags.FLAGS:
    return flags.FlagHolder(flags.FLAGS, flags.FLAGS["config"])
  # ml_collections applies the --config.* overrides as it parses --config: here, as the flag is
  # defined (the default file), and in absl's parsing of --config=FILE. A field the config lacks
  # raises an AttributeError, which absl's one-line report of a bad flag does not catch. A file
  # that does not load is reported after parsing, by a validator (ml_collections defers that
  # error to the config's first use, inside main).
  with _fields_checked():
    holder = config_flags.DEFINE_config_file("config", str(CONFIGS / default), help_string,
                                             lock_config=True)
  flag = flags.FLAGS["config"]
  parse = flag._parse  # what absl's Flag.parse calls

  def parse_checked(argument):
    with _fields_checked():
      return parse(argument)
  flag._parse = parse_checked
  flags.register_validator("config", functools.partial(_loaded, default=default))
  return holder


@contextlib.contextmanager
def _fields_checked():
  """A --config.* override of a field the config lacks, or a ``--config=FILE:arg`` that its
  ``get_config`` refuses -> a one-line error, and exit."""
  try:
    yield
  except (AttributeError, KeyError) as e:
    if "attribute 'get_config'" in str(e):
      raise SystemExit("FATAL Flags parsing error: --config: cannot load: the file defines no "
                       "get_config()") from None
    raise SystemExit(f"FATAL Flags parsing error: --config: no such field: {_message(e)}") from None
  except flags.IllegalFlagValueError as e:
    # ml_collections re-raises get_config's error with the whole traceback in its message; the
    # last line is the error itself (e.g. "get_config() takes 0 positional arguments...").
    lines = str(e).strip().splitlines()
    if not lines or "Error whilst parsing config file" not in lines[0]:
      raise
    raise SystemExit(f"FATAL Flags parsing error: --config: cannot load: {lines[-1].strip()}"
                     ) from None
  except Exception as e:  # noqa: BLE001 (the file's own code: a syntax error, a failed import)
    where = f" ({e.filename}, line {e.lineno})" if isinstance(e, SyntaxError) else ""
    raise SystemExit(f"FATAL Flags parsing error: --config: cannot load: {type(e).__name__}: "
                     f"{_message(e)}{where}") from None


def _message(error: BaseException) -> str:
  """The innermost message of ``error`` (ml_collections wraps a KeyError in an AttributeError),
  on one line."""
  message = error
  while isinstance(message, BaseException) and message.args and not isinstance(message, OSError):
    message = message.args[0]
  if isinstance(message, OSError) and message.strerror:  # args[0] is only its errno
    message = f"{message.filename}: {message.strerror}" if message.filename else message.strerror
  return " ".join(str(message).split())


# Config fields that name a directory to write into, at any depth (--config.bench.output_dir).
_DIR_FIELDS = ("output_dir", "profile_dir", "compilation_cache_dir")


def dir_in_the_way(flag: str, path) -> str | None:
  """What stops directory ``path`` (set by ``flag``) from being made, if anything: ``path``
  itself or the ancestor nearest it that exists, being a file. Checked before the work, not by
  mkdir after it."""
  path = pathlib.Path(path)
  existing = next((p for p in (path, *path.parents) if p.exists()), None)
  if existing is None or existing.is_dir():
    return None
  return f"{flag}: {existing} exists and is not a directory"


def check_dir_to_write(flag: str, path) -> None:
  """`dir_in_the_way` as a usage error."""
  if problem := dir_in_the_way(flag, path):
    raise app.UsageError(problem)


def _dirs_to_write(config, prefix: str = "--config."):
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _dirs_to_write(value, f"{prefix}{key}.")
    elif key in _DIR_FIELDS and value:
      yield prefix + key, value


def _loaded(config, default: str) -> bool:
  """A --config file that loaded (one that failed is held as an object that raises on every
  use) and has the top-level fields of the experiment's ``default`` config (another
  experiment's config would fail inside main), whose directories to write can be made."""
  error = getattr(config, "__dict__", {}).get("_error")
  if isinstance(error, BaseException):  # absl's report would print that object's repr
    raise SystemExit(f"FATAL Flags parsing error: --config: cannot load: {_message(error)}")
  if not hasattr(config, "keys"):
    raise SystemExit(f"FATAL Flags parsing error: --config: cannot load: get_config() returned "
                     f"{type(config).__name__}, not a ConfigDict")
  expected = importlib.import_module(f"configs.{pathlib.Path(default).stem}").get_config()
  missing = sorted(set(expected.keys()) - set(config.keys()))
  if missing:
    raise SystemExit(f"FATAL Flags parsing error: --config: no field {', '.join(missing)} in "
                     "that config (is it another experiment's?)")
  for flag, path in _dirs_to_write(config):
    if problem := dir_in_the_way(flag, path):
      raise SystemExit(f"FATAL Flags parsing error: {problem}")
  return True


def gpu_memory_fraction(fraction: float, flag: str) -> None:
  """Lets JAX's GPU allocator take ``fraction`` of the memory (its default, 0.75, leaves 20 GB of
  an 80 GB H100 unused: less than GPT-OSS-120B's 61 GiB of weights needs). Call it before the
  first device use; an XLA_PYTHON_CLIENT_MEM_FRACTION already set wins. A fraction outside
  (0, 1] is a usage error naming ``flag``."""
  if not (is_real(fraction) and 0 < fraction <= 1):
    raise app.UsageError(f"{flag} must be in (0, 1], got {fraction!r}")
  os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", str(fraction))


def output_dir(config, name: str) -> pathlib.Path:
  """``config.output_dir`` if set, else ``results/<name>/<UTC timestamp>``; created."""
  path = config.get("output_dir") or ""
  if not path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    path = REPO / "results" / name / stamp
  path = pathlib.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  return path


def device_description() -> str:
  device = jax.devices()[0]
  return f"{device.platform}:{device.device_kind} (jax {jax.__version__})"


# Ceilings of the GPUs measured here by `experiments.ceilings` (BENCHMARKS.md): HBM read
# bandwidth, since the MXFP4 kernels and a decode step mostly read (a copy, reading and writing,
# runs slower: H100 2.97 TB/s), and the dense bf16 matmul rate (8192^3). H100: twenty-ninth
# round; H200: fourth round. By JAX's device kind, whole: an H100 PCIe or NVL has other HBM.
DEVICE_CEILINGS = {"NVIDIA H100 80GB HBM3": (3.22e12, 670e12), "NVIDIA H200": (4.79e12, 697e12)}


def ceilings(hbm_bytes_per_s: float = 0.0, bf16_flops_per_s: float = 0.0,
             flag_prefix: str = "--config.",
             used: tuple[str, ...] = ("hbm_bytes_per_s", "bf16_flops_per_s"),
             ) -> tuple[float, float]:
  """The rooflines' (bytes/s, bf16 FLOP/s): the given values, and for each one left 0 this
  device's from `DEVICE_CEILINGS` (the H100's on a device not listed there, said on stdout,
  naming the flags under ``flag_prefix`` that set the ceilings the caller ``used``)."""
  given = dict(hbm_bytes_per_s=hbm_bytes_per_s, bf16_flops_per_s=bf16_flops_per_s)
  for name, value in given.items():
    if not (is_real(value) and value >= 0 and math.isfinite(value)):
      raise app.UsageError(f"{flag_prefix}{name} must be a finite rate > 0 (or 0: this "
                           f"device's), got {value!r}")
  kind = jax.devices()[0].device_kind
  known = DEVICE_CEILINGS.get(kind)
  unset = [name for name in used if not given[name]]
  if known is None and unset:
    flags_to_pass = " and ".join(flag_prefix + name for name in unset)
    print(f"ceilings: none known for {kind!r}; using the H100's (pass {flags_to_pass}, measured "
          "by experiments.ceilings)")
  known = known or DEVICE_CEILINGS["NVIDIA H100 80GB HBM3"]
  return hbm_bytes_per_s or known[0], bf16_flops_per_s or known[1]


def write_json(path: pathlib.Path, payload) -> None:
  path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def write_results(config, name: str, results: list) -> pathlib.Path:
  """``results.json`` (this device, the config and ``results``) in `output_dir`; -> the folder."""
  out = output_dir(config, name)
  write_json(out / "results.json", dict(device=device_description(), config=config.to_dict(),
                                        results=results))
  return out


def kernel_field_cast(field_type: str):
  """How a `KernelConfig` field of ``field_type`` (its annotation) is written on the command
  line -> its parser: ints, bools as 0 or 1, strings as they are."""
  return {"int": int, "bool": _zero_or_one}.get(field_type, str)


def _zero_or_one(text: str) -> bool:
  if text not in ("0", "1"):
    raise ValueError(f"a bool option must be 0 or 1, got {text!r}")
  return text == "1"


def kernel_options(text: str, flag: str = "--config.kernel_options") -> dict:
  """``"decode=lut,accumulate_in_mma=1"`` (the option string of ``flag``) -> KernelConfig field
  values (ints, and bools written as 0 or 1), for experiments that override the tuned defaults.
  A bad option is a one-line usage error."""
  from mxfp4_jax.kernels import KernelConfig  # noqa: PLC0415

  types = {f.name: f.type for f in dataclasses.fields(KernelConfig)}
  options = {}
  for item, name, value in _name_values(text):
    if name not in types or not value:
      raise app.UsageError(f"{flag}: {item!r} is not NAME=VALUE with NAME one "
                           f"of {sorted(types)}")
    options[name] = _kernel_field(f"{flag}: {item!r}", name, value)
  return options


def compiler_options(text: str | None, flag: str) -> dict | None:
  """``"xla_gpu_command_buffer_scheduling_mode=CONCURRENT,..."`` (``flag``'s XLA options for the
  decode loop) -> the dict `Generator` takes, each value read as a bool (true or false), an int,
  a float or else text; a bad item, option name or value is a one-line usage error naming
  ``flag``. None (the flag unset) stays None: `Generator`'s default."""
  from mxfp4_jax.generate.engine import check_compiler_options  # noqa: PLC0415

  if text is None:
    return None

  options = {}
  for item, name, value in _name_values(text):
    if not (name and value):
      raise app.UsageError(f"{flag}: {item!r} is not NAME=VALUE (an XLA option and its value)")
    options[name] = _option_value(value)
  try:
    return check_compiler_options(options, flag)
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def _name_values(text: str):
  """``"a=1,b=2"`` -> (item, name, value) for each item, stripped; a missing part is ""."""
  for item in csv_list(text):
    name, _, value = (part.strip() for part in item.partition("="))
    yield item, name, value


def _option_value(text: str) -> bool | int | float | str:
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text


def kernel_fields(config, sweep: bool = False) -> dict:
  """The KernelConfig fields that ``config`` has -> {name: value}, or with ``sweep`` (each field
  a comma list, as tune_kernel's) {name: [values]}; each value checked on its own (the
  dataclass's checks, and num_warps a power of two), a bad one a one-line usage error naming its
  ``--config.`` field. Call it before any weights are built."""
  from mxfp4_jax.kernels import KernelConfig  # noqa: PLC0415

  fields = {}
  for name in (f.name for f in dataclasses.fields(KernelConfig) if f.name in config):
    flag = f"--config.{name}"
    values = [_kernel_field(flag, name, v) for v in (csv_list(config[name]) if sweep
                                                      else [config[name]])]
    if not values:
      raise app.UsageError(f"{flag}: needs at least one value")
    fields[name] = values if sweep else values[0]
  return fields


def _kernel_field(flag: str, name: str, value):
  """``value`` of KernelConfig field ``name`` (a string is parsed: `kernel_field_cast`),
  checked on one of the tuned configs; a bad one is a usage error beginning with ``flag``."""
  from mxfp4_jax.kernels import KernelConfig, tuning  # noqa: PLC0415

  try:
    if isinstance(value, str):
      field_type = {f.name: f.type for f in dataclasses.fields(KernelConfig)}[name]
      value = kernel_field_cast(field_type)(value)
    dataclasses.replace(tuning.TABLE[0][1], **{name: value})  # KernelConfig's checks
  except (TypeError, ValueError) as e:
    raise app.UsageError(f"{flag}: {e}") from None
  return value


def require_gpu(what: str) -> None:
  """A one-line usage error unless JAX runs on a GPU: for the experiments that compile their
  Triton kernels for it (off a GPU, Pallas runs them in interpret mode only). Call it before
  any weights are built."""
  if jax.default_backend() != "gpu":
    raise app.UsageError(f"{what} needs a GPU; JAX's backend here is {jax.default_backend()!r}")


def known_shapes(flag: str, names: list[str], top_k=None) -> list[str]:
  """``names`` checked against `configs.bench_kernel.SHAPES` (at least one) -> ``names``; an
  unknown one is a one-line usage error naming ``flag`` and the known ones. With ``top_k`` (a
  config's ``top_k``, the experts a token's rows go to), that too is checked: an int from 1 to
  the fewest experts of the shapes."""
  from configs.bench_kernel import SHAPES  # noqa: PLC0415

  unknown = [name for name in names if name not in SHAPES]
  if unknown or not names:
    what = f"{unknown[0]!r} is not a shape" if unknown else "needs at least one shape"
    raise app.UsageError(f"{flag}: {what}; known: {', '.join(SHAPES)}")
  if top_k is not None:
    fewest = min(names, key=lambda name: SHAPES[name][0])
    if not (is_int(top_k) and 1 <= top_k <= SHAPES[fewest][0]):
      raise app.UsageError(f"--config.top_k must be an int from 1 to {SHAPES[fewest][0]} (the "
                           f"experts of {fewest}), got {top_k!r}")
  return names


def at_least(flag: str, value, minimum: int, allow_empty: bool = False):
  """An int field, or a comma list of ints (a string, parsed) -> its value or list, each
  checked to be >= ``minimum`` (and the list not empty unless ``allow_empty``); anything else
  is a one-line usage error naming ``flag``."""
  try:
    values = csv_list(value, int) if isinstance(value, str) else [value]
  except ValueError:
    raise app.UsageError(f"{flag}: {value!r} is not a comma-separated list of integers") from None
  bad = [v for v in values if not v >= minimum]
  if bad or not (values or allow_empty):
    raise app.UsageError(f"{flag} must be >= {minimum}, got {bad[0] if bad else 'none'}")
  return values if isinstance(value, str) else value


def positive(flag: str, value, allow_empty: bool = False):
  """`at_least` 1."""
  return at_least(flag, value, 1, allow_empty)


def positive_pair(config, names: tuple[str, str], prefix: str = "--config.") -> None:
  """Two comma lists of ints >= 1 (`positive`) of which one may be empty, not both: a run with
  neither measures nothing."""
  lists = [positive(prefix + name, config[name], allow_empty=True) for name in names]
  if not any(lists):
    raise app.UsageError(f"{prefix}{names[0]} and {prefix}{names[1]} are both empty: nothing to "
                         "measure")


def seed(flag: str, value) -> int:
  """A seed for numpy's generator (>= 0) that a PRNGKey also takes whole (it keeps 32 bits)."""
  if not (is_int(value) and 0 <= value < 2**32):
    raise app.UsageError(f"{flag} must be an int in [0, 2**32), got {value!r}")
  return value


def timing_fields(config) -> None:
  """``config.calls`` (two chain lengths, 1 <= low < high), and ``repeats``, ``weight_copies``,
  ``max_rel_err`` (the error past which a kernel is not timed) and ``max_weight_bytes`` where
  ``config`` has them, checked as `benchmarking.time_per_call` and the copy rotation need them;
  a bad one is a one-line usage error naming its field. Call it before any weights are built."""
  calls = tuple(config.calls)
  if len(calls) != 2 or not all(map(is_int, calls)) or not 1 <= calls[0] < calls[1]:
    raise app.UsageError(f"--config.calls must be two chain lengths 1 <= low < high, got {calls}")
  if "repeats" in config:
    positive("--config.repeats", config.repeats)
  if "weight_copies" in config and not (is_int(config.weight_copies)
                                        and config.weight_copies >= 2):
    raise app.UsageError("--config.weight_copies must be an int >= 2 (copies rotated between "
                         f"calls), got {config.weight_copies!r}")
  if "max_rel_err" in config and not config.max_rel_err > 0:
    raise app.UsageError(f"--config.max_rel_err must be > 0, got {config.max_rel_err!r}")
  if "max_weight_bytes" in config and not config.max_weight_bytes > 0:  # NaN too
    raise app.UsageError(f"--config.max_weight_bytes must be > 0 (the cap on a weight's copies), "
                         f"got {config.max_weight_bytes!r}")


def model_config(values, flag: str = "--config.model"):
  """`GptOssConfig.from_dict` of ``values``, a bad field a one-line usage error naming
  ``flag``."""
  from mxfp4_jax.model import GptOssConfig  # noqa: PLC0415

  try:
    return GptOssConfig.from_dict(values)
  except (TypeError, ValueError) as e:
    raise app.UsageError(f"{flag}: {e}") from None


def within_context(flag: str, positions: int, cfg) -> None:
  """A usage error naming ``flag`` when ``positions`` (a generator's cache length) are over the
  model's trained context (`GptOssConfig.context_length`), which `Generator` refuses."""
  if positions > cfg.context_length:
    raise app.UsageError(f"{flag}: {positions:,} positions are over the model's context of "
                         f"{cfg.context_length:,} tokens")


def check_kernels_run_here(cfg, flag: str = "--config.model") -> None:
  """`GptOssConfig.check_moe_kernels_run_here` as a usage error naming ``flag``'s fields, not a
  traceback from the model's first trace. Call it after `gpu_memory_fraction` (it starts the
  backend)."""
  try:
    cfg.check_moe_kernels_run_here(owner=f"{flag}.")
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def load_checkpoint(path, flag: str, model_config):
  """`mxfp4_jax.load_model` with the runtime fields that ``model_config`` has (an experiment's
  ``config.model``; the checkpoint brings its own hyperparameters), a problem in the checkpoint
  (`CheckpointError`: a file, key, tensor or packed format) reported as a one-line usage error
  naming ``flag``."""
  import mxfp4_jax  # noqa: PLC0415

  return _from_checkpoint(mxfp4_jax.load_model, path, flag, model_config)


def checkpoint_config(path, flag: str, model_config):
  """The config of `load_checkpoint`'s model, read without the weights (the same usage
  errors): what a run asks of the model is checked before it loads."""
  from mxfp4_jax.model.loading import checkpoint_config as read  # noqa: PLC0415

  return _from_checkpoint(read, path, flag, model_config)


def _from_checkpoint(read, path, flag: str, model_config):
  from mxfp4_jax.checkpoint import CheckpointError  # noqa: PLC0415
  from mxfp4_jax.model import GptOssConfig  # noqa: PLC0415

  # The checkpoint brings its hyperparameters: one given on the command line would be ignored.
  overridden = flags.FLAGS["config"].override_values if "config" in flags.FLAGS else {}
  ignored = sorted(name for name in overridden if name.startswith("model.")
                   and name.removeprefix("model.") not in GptOssConfig.RUNTIME)
  if ignored:
    raise app.UsageError(f"--config.{ignored[0]}: {flag} brings the model's hyperparameters; "
                         f"only {', '.join(GptOssConfig.RUNTIME)} apply to it")
  runtime = {k: model_config[k] for k in GptOssConfig.RUNTIME if k in model_config}
  try:
    return read(path, **runtime)
  except CheckpointError as e:
    raise app.UsageError(f"{flag}: {e}") from None


def first_line(error: BaseException) -> str:
  """The first line of an exception's message, or its type where the message is empty (a bare
  ``assert`` inside a compiler)."""
  return (str(error).splitlines() or [type(error).__name__])[0]


def csv_list(text, cast=str) -> list:
  """``"1,4,16"`` (how list-valued config fields are written on the command line) -> a list.
  Empty items are skipped, so that ``--config.bench.prefill_lengths=`` is the empty list and a
  trailing comma is harmless."""
  return [cast(item) for item in str(text).split(",") if item.strip()]
