"""The model families by kind, the name a checkpoint stores (``"gpt"``, ``"llama"``), and
Hugging Face folders loaded by their ``config.json``'s ``model_type``.

    >>> family("llama")
    <class 'alphagrad.nn.llama.Llama'>
    >>> model = from_pretrained("SmolLM-135M/")       # a Llama; a GPT-2 folder gives a GPT
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from alphagrad.nn.gpt import GPT
from alphagrad.nn.llama import Llama
from alphagrad.nn.lm import LanguageModel

FAMILIES: dict[str, type[LanguageModel]] = {"gpt": GPT, "llama": Llama}
HF_MODEL_TYPES = {"gpt2": "gpt", "llama": "llama"}  # config.json model_type -> kind


def family(kind: str) -> type[LanguageModel]:
    """The model class of ``kind``; a ValueError names the known kinds."""
    try:
        return FAMILIES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(FAMILIES)}") from None


def from_state_dict(kind: str, config: dict[str, Any], state_dict: dict) -> LanguageModel:
    """A model of ``kind`` from stored config fields and weights (a checkpoint's)."""
    cls = family(kind)
    return cls.from_state_dict(cls.config_class.from_dict(config), state_dict)


def hf_kind(folder: str | os.PathLike) -> str:
    """The model kind of a Hugging Face folder, from its config.json's ``model_type``."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"from_pretrained: {path} is not valid JSON "
                         f"({e or 'nested too deeply'})") from None
    if type(config) is not dict:
        raise ValueError(f"from_pretrained: {path} holds a JSON {type(config).__name__}, not "
                         "an object; is this a Hugging Face config.json?")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in HF_MODEL_TYPES:
        raise ValueError(f"{path}: model_type {model_type!r} is not supported; alphagrad loads "
                         f"{', '.join(map(repr, HF_MODEL_TYPES))}")
    return HF_MODEL_TYPES[model_type]


def from_pretrained(folder: str | os.PathLike) -> LanguageModel:
    """The GPT or Llama in a local Hugging Face folder; a ValueError names the folder."""
    cls = family(hf_kind(folder))
    try:
        return cls.from_pretrained(str(folder))
    except ValueError as e:
        if os.fspath(folder) in str(e):
            raise
        raise ValueError(f"{os.fspath(folder)}: {e}") from None
