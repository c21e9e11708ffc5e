"""Hugging Face GPT-2 weight names ↔ nanoGPT's, without network access.

Hugging Face stores the four projection matrices as ``Conv1D`` weights, (in, out): they are
transposed into ``Linear``'s (out, in). Its attention-mask buffers (``attn.bias``,
``attn.masked_bias``) hold no weights and are dropped. Its ``model.safetensors`` files name
tensors without the ``transformer.`` prefix and leave out the tied ``lm_head.weight``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from alphagrad.nn.safetensors import load_safetensors

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")
GPT2_HEAD_SIZE = 64  # every GPT-2 size has 64-wide heads
HF_ACTIVATION = {"tanh": "gelu_new", "none": "gelu"}  # GPTConfig.gelu_approximate -> config.json
GELU_FORMS = {**{hf_name: form for form, hf_name in HF_ACTIVATION.items()},
              "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}  # and back, with HF's aliases


def _array(value: Any) -> np.ndarray:
    return np.asarray(getattr(value, "data", value))


def from_hf(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A Hugging Face GPT-2 state dict under nanoGPT's names, in ``Linear`` layout."""
    out = {}
    for key, value in state_dict.items():
        name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
        if name.endswith(MASK_BUFFERS):
            continue
        array = _array(value)
        out[name] = np.ascontiguousarray(array.T) if name.endswith(CONV1D) else array
    if "lm_head.weight" not in out and "transformer.wte.weight" in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def to_hf(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """nanoGPT-named weights under Hugging Face GPT-2's names, Conv1D weights transposed."""
    return {name: np.ascontiguousarray(_array(value).T) if name.endswith(CONV1D) else _array(value)
            for name, value in state_dict.items()}


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The GPTConfig fields that GPT-2 weights imply (heads assumed 64 wide, as GPT-2's)."""
    sd = from_hf(state_dict)
    for key in ("transformer.wte.weight", "transformer.wpe.weight"):
        if key not in sd:
            raise ValueError(f"from_hf_state_dict: no {key} among the keys; is this GPT-2?")
    vocab_size, n_embd = sd["transformer.wte.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if n_embd % GPT2_HEAD_SIZE:
        raise ValueError(f"from_hf_state_dict: n_embd={n_embd} is not a multiple of GPT-2's head "
                         f"size {GPT2_HEAD_SIZE}; pass config=GPTConfig(...) with n_head")
    return {"block_size": sd["transformer.wpe.weight"].shape[0], "vocab_size": vocab_size,
                "n_layer": max(layers) + 1 if layers else 0, "n_head": n_embd // GPT2_HEAD_SIZE,
                "n_embd": n_embd, "bias": "transformer.ln_f.bias" in sd}


def read_folder(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(GPTConfig fields, state dict) from a Hugging Face GPT-2 folder (config.json and
    model.safetensors)."""
    config_path = os.path.join(folder, "config.json")
    weights_path = os.path.join(folder, "model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"from_pretrained: {path} not found; a Hugging Face GPT-2 "
                                    "folder holds config.json and model.safetensors")
    with open(config_path) as f:
        try:
            hf_config = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"from_pretrained: {config_path} is not valid JSON ({e})") from None
    try:
        config = {
            "block_size": hf_config.get("n_positions", hf_config.get("n_ctx")),
            "vocab_size": hf_config["vocab_size"], "n_layer": hf_config["n_layer"],
            "n_head": hf_config["n_head"], "n_embd": hf_config["n_embd"], "bias": True,
        }
    except KeyError as e:
        raise ValueError(f"from_pretrained: {config_path} lacks {e}; is this a GPT-2 config?") \
            from None
    activation = hf_config.get("activation_function", "gelu_new")  # GPT-2's default
    if activation not in GELU_FORMS:
        raise ValueError(f"from_pretrained: {config_path} asks for activation_function "
                         f"{activation!r}; alphagrad's GPT has {', '.join(GELU_FORMS)}")
    config["gelu_approximate"] = GELU_FORMS[activation]
    return config, load_safetensors(weights_path)
