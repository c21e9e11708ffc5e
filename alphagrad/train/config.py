"""TrainConfig: every training knob, with nanoGPT-like defaults, read from and written to TOML.

    config = TrainConfig.from_toml("train.toml").with_overrides(["learning_rate=3e-4"])
    config.validate()
    Path("run/config.toml").write_text(config.to_toml())

The TOML file is flat (``key = value`` lines); a key left out keeps its default, and a knob whose
value is None (meaning "derive it", see ``resolved``) is simply not written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alphagrad.nn.families import FAMILIES as MODEL_KINDS
from alphagrad.nn.lm import LIMITS as MODEL_LIMITS
from alphagrad.tensor.kernels.gelu import FORMS as GELU_FORMS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# A training config is a few kilobytes of flat ``key = value`` lines. tomllib keeps every prefix
# of a dotted key (``a.b.c = 1``), so a key of n parts costs n**2 memory (20 KB of ``a.a.a``
# took 400 MB); longer keys and larger files are refused before it reads them.
_TOML_BYTES = 1 << 20
_KEY_PART = r"""(?:[\w-]+|"[^"\n]*"|'[^'\n]*')[ \t]*\.[ \t]*"""  # a bare or quoted part, a dot
_DOTTED_KEY = re.compile(  # where a key may start: a line, a [table] header, an inline {table}
    rf"(?:^|[{{,])[ \t]*\[*[ \t]*(?:{_KEY_PART}){{63}}", re.MULTILINE)

_TYPE_NAMES = {int: "an int", float: "a float", bool: "a bool", str: "a string"}
_STEPS = 10**12  # any count of steps: far past every run, and it fits a checkpoint's 64 bits
# The largest value of every positive int setting (None: unset, where allowed), so that no
# setting asks for more than a machine has before anything is allocated.
_INT_LIMITS = {
    **{name: MODEL_LIMITS[name] for name in ("n_layer", "n_head", "n_embd", "block_size")},
    "batch_size": 1 << 16, "grad_accum_steps": 1 << 16, "eval_iters": 10**6, "keep_last": 10**6,
    "n_inner": 4 * MODEL_LIMITS["n_embd"], "n_kv_head": MODEL_LIMITS["n_head"], "sample_tokens": 1 << 20, "num_threads": 4096,
    **dict.fromkeys(("max_iters", "lr_decay_iters", "eval_interval", "log_interval",
                     "checkpoint_interval", "sample_interval", "patience", "checksum_interval"),
                  _STEPS),
}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings. ``None`` means: derive from another field (see ``resolved``) or off."""

    # model
    model: str = "gpt"  # the family: "gpt" or "llama"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    gelu_approximate: str = "tanh"  # "none": the exact GELU (nanoGPT's)
    n_inner: int | None = None  # the MLP's hidden width; None: 4 * n_embd
    layer_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True  # False: lm_head has a weight of its own
    scale_attn_weights: bool = True  # GPT-2 variants (see GPTConfig)
    scale_attn_by_inverse_layer_idx: bool = False
    n_kv_head: int | None = None  # llama: key/value heads (grouped-query attention); None: n_head
    rope_theta: float = 10000.0  # llama: the rotary positions' base
    init_from: str | None = None  # a Hugging Face folder (GPT-2 or Llama) to fine-tune
    # data
    data_dir: str | None = None
    out_dir: str | None = None  # None: a new folder under runs/
    batch_size: int = 12
    grad_accum_steps: int = 1
    # optimisation
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0: no clipping
    # evaluation
    eval_interval: int = 250
    eval_iters: int = 20
    patience: int | None = None  # evaluations without improvement before stopping; None: never
    # logging, checkpoints, samples
    log_interval: int = 10
    checkpoint_interval: int | None = None  # None: eval_interval
    keep_last: int = 3
    sample_interval: int | None = None  # None: no samples during training
    sample_tokens: int = 200
    sample_prompt: str | None = None  # None: the preset's on its built-in corpus, else a
    # validation line's start (two prompts)
    # runtime
    checksum_interval: int | None = 100  # data-parallel ranks compare weight checksums; None: off
    collective_timeout: float = 1800.0  # data-parallel: seconds a rank waits for the others
    seed: int = 1337
    num_threads: int | None = None  # None: the cores other processes leave free
    dtype: str = "float32"
    preset: str | None = None

    # ---- construction ----------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the config") -> TrainConfig:
        """A checked config from ``{field: value}``; missing fields keep their defaults. An error
        names ``source`` (a file, a preset)."""
        config = cls(**_coerce_all(values, source))
        try:
            return config.validate()
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read a flat TOML file; unknown keys and wrongly typed values are errors."""
        return cls.from_dict(read_toml(path), source=str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied, type-checked and validated."""
        return dataclasses.replace(self, **_coerce_all(changes, "replace()")).validate()

    def with_overrides(self, overrides: Iterable[str]) -> TrainConfig:
        """Apply ``["key=value", ...]`` strings, each parsed by its field's type.

        >>> TrainConfig().with_overrides(["n_layer=6", "patience=none"]).n_layer
        6
        """
        changes: dict[str, Any] = {}
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise ValueError(f"override {item!r} must look like key=value")
            _check_known(key, "the overrides")
            changes[key] = _parse(key, text.strip())
        return self.replace(**changes)

    # ---- output ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        lines = ["# alphagrad training config"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                lines.append(f"{f.name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    # ---- checks ----------------------------------------------------------------------

    def validate(self) -> TrainConfig:
        """Return self if the values make sense together; else one ValueError listing all."""
        errors = []
        for name, limit in _INT_LIMITS.items():
            value = getattr(self, name)
            if value is not None and not 1 <= value <= limit:
                errors.append(f"{name} must be in [1, {limit:,}], got {value:,}")
        if self.n_head >= 1 and self.n_embd % self.n_head:
            errors.append(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        errors += self._family_errors()
        for name, ok, rule in (
            ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
            ("layer_norm_eps", self.layer_norm_eps > 0, "positive"),
            ("learning_rate", 0 < self.learning_rate < math.inf, "positive"),
            ("min_lr", 0 <= self.min_lr <= self.learning_rate, "in [0, learning_rate]"),
            ("warmup_iters", 0 <= self.warmup_iters <= _STEPS, f"in [0, {_STEPS:,}]"),
            ("weight_decay", 0 <= self.weight_decay < math.inf, "non-negative"),
            ("beta1", 0 <= self.beta1 < 1, "in [0, 1)"),
            ("beta2", 0 <= self.beta2 < 1, "in [0, 1)"),
            ("grad_clip", 0 <= self.grad_clip < math.inf, "non-negative (0 turns it off)"),
            ("collective_timeout", self.collective_timeout > 0, "positive (inf: no limit)"),
            ("seed", 0 <= self.seed < 2**64, "in [0, 2**64)"),
            ("dtype", self.dtype in ("float32", "float64"), "'float32' or 'float64'"),
            ("gelu_approximate", self.gelu_approximate in GELU_FORMS,
             " or ".join(map(repr, GELU_FORMS))),
        ):
            if not ok:
                errors.append(f"{name} must be {rule}, got {getattr(self, name)!r}")
        if errors:
            raise ValueError("invalid training config: " + "; ".join(errors))
        return self

    def _family_errors(self) -> list[str]:
        """What the chosen model family cannot do with these settings."""
        if self.model not in MODEL_KINDS:
            return [f"model must be {' or '.join(map(repr, MODEL_KINDS))}, got {self.model!r}"]
        if self.model == "gpt":
            llama_only = [k for k in ("n_kv_head",) if getattr(self, k) is not None]
            return [f"{k} is a llama setting (set model=llama)" for k in llama_only]
        errors = []
        if self.dropout:
            errors.append("dropout must be 0 for model=llama (Llama has no dropout)")
        if self.n_kv_head and self.n_head % self.n_kv_head:
            errors.append(f"n_head ({self.n_head}) must be a multiple of n_kv_head "
                          f"({self.n_kv_head})")
        if not self.rope_theta > 0:
            errors.append(f"rope_theta must be positive, got {self.rope_theta!r}")
        return errors

    def resolved(self) -> TrainConfig:
        """A copy with the derived knobs filled in (lr_decay_iters, checkpoint_interval)."""
        return dataclasses.replace(
            self,
            lr_decay_iters=self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters,
            checkpoint_interval=self.checkpoint_interval or self.eval_interval)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The values of a TOML config file; a ValueError names the file if it is not one."""
    with open(path, "rb") as f:
        raw = f.read(_TOML_BYTES + 1)
    if len(raw) > _TOML_BYTES:
        raise ValueError(f"{path} is larger than {_TOML_BYTES >> 20} MiB; a training config is "
                         "a few lines of key = value")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from None
    if _DOTTED_KEY.search(text):
        raise ValueError(f"{path} has a dotted key of 64 or more parts; a training config is "
                         "flat (key = value lines)")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    except RecursionError:
        raise ValueError(f"{path} is not valid TOML: nested too deeply") from None


@functools.cache
def _field_types() -> dict[str, tuple[type, bool]]:
    """Each field's base type and whether it may be None."""
    out = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = typing.get_args(hint)
        out[name] = (next(a for a in args if a is not type(None)), True) if args else (hint, False)
    return out


def _check_known(key: str, source: str) -> None:
    if key not in _field_types():
        raise ValueError(f"unknown key {key!r} in {source}; known keys: "
                         f"{', '.join(_field_types())}")


def _type_error(key: str, value: Any, source: str) -> ValueError:
    kind, optional = _field_types()[key]
    return ValueError(f"{key!r} must be {_TYPE_NAMES[kind]}{' or none' if optional else ''}, "
                      f"got {value!r} (in {source})")


def _coerce(key: str, value: Any, source: str) -> Any:
    kind, optional = _field_types()[key]
    if value is None and optional:
        return None
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise _type_error(key, value, source)


def _coerce_all(values: dict[str, Any], source: str) -> dict[str, Any]:
    for key in values:
        _check_known(key, source)
    return {key: _coerce(key, value, source) for key, value in values.items()}


def _parse(key: str, text: str) -> Any:
    kind, optional = _field_types()[key]
    if optional and text.lower() in ("none", "null"):
        return None
    if kind is str:
        return text
    if kind is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
    else:
        with contextlib.suppress(ValueError):
            return kind(text)
    raise _type_error(key, text, "the overrides")


def _toml_value(value: bool | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # TOML reads Python's float repr, inf and nan included
    if isinstance(value, int):
        return str(value)
    escaped = "".join(
        "\\" + ch if ch in '"\\' else f"\\u{ord(ch):04x}" if ch < " " or ch == "\x7f" else ch
        for ch in value)
    return f'"{escaped}"'
