"""Hugging Face ``LlamaForCausalLM`` folders in and out, without network access.

Our Llama's state-dict names are Hugging Face's, so weights map one to one; this module reads
and writes ``config.json``, single-file and sharded (``model.safetensors.index.json``) weights,
and widens bfloat16/float16 weights to float32. A config asking for something our Llama does not
compute (biases, another activation, sliding-window attention, another rotary scaling) is
refused by name rather than loaded into a model that would compute something else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from alphagrad.nn.llama import LLAMA3_SCALING, LlamaConfig
from alphagrad.nn.safetensors import load_safetensors, save_safetensors

INDEX = "model.safetensors.index.json"
# config.json key -> LlamaConfig field, and the default Hugging Face assumes when it is absent
FIELDS = {
    "vocab_size": ("vocab_size", None), "max_position_embeddings": ("block_size", None),
    "num_hidden_layers": ("n_layer", None), "num_attention_heads": ("n_head", None),
    "num_key_value_heads": ("n_kv_head", None), "hidden_size": ("n_embd", None),
    "intermediate_size": ("intermediate_size", None), "rms_norm_eps": ("norm_eps", 1e-6),
    "tie_word_embeddings": ("tie_embeddings", False),
}
# settings that must hold their neutral value, or the folder is refused
NEUTRAL = {"hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
           "sliding_window": None, "use_sliding_window": False}


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"from_pretrained: cannot read {what} {path} ({e})") from None


def config_fields(hf_config: Mapping[str, Any], source: str = "config.json") -> dict[str, Any]:
    """The LlamaConfig fields a Hugging Face Llama config.json describes; anything our Llama
    would compute differently is a ValueError naming the setting."""
    if hf_config.get("model_type") != "llama":
        raise ValueError(f"from_pretrained: {source} has model_type "
                         f"{hf_config.get('model_type')!r}; this loader reads 'llama'")
    for key, neutral in NEUTRAL.items():
        if hf_config.get(key, neutral) not in (neutral, None):
            raise ValueError(f"from_pretrained: {source} sets {key}={hf_config[key]!r}, which "
                             f"alphagrad's Llama does not support (it computes {key}={neutral!r})")
    fields = {}
    for key, (field, default) in FIELDS.items():
        value = hf_config.get(key, default)
        if value is None and key != "num_key_value_heads":
            raise ValueError(f"from_pretrained: {source} lacks {key!r}")
        fields[field] = value
    if fields["n_kv_head"] is None:
        fields["n_kv_head"] = fields["n_head"]
    fields.update(_rope_fields(hf_config, source))
    head_dim = hf_config.get("head_dim")
    if head_dim is not None:
        config = LlamaConfig(**fields)  # sizes checked before any arithmetic on them
        if type(head_dim) is not int or head_dim * config.n_head != config.n_embd:
            raise ValueError(f"from_pretrained: {source} sets head_dim={head_dim!r}, but "
                             f"alphagrad's Llama needs hidden_size / num_attention_heads = "
                             f"{config.n_embd // config.n_head}")
    return fields


def _rope_fields(hf_config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """rope_theta and rope_scaling, from ``rope_parameters`` (transformers 5) or from
    ``rope_theta`` and ``rope_scaling`` (the older files on the Hub)."""
    params = hf_config.get("rope_parameters")
    if params is None:
        scaling = hf_config.get("rope_scaling") or {}
        params = {**scaling, "rope_theta": hf_config.get("rope_theta", 10000.0)} \
            if isinstance(scaling, dict) else scaling
    if not isinstance(params, dict):
        raise ValueError(  # noqa: TRY004 - a bad file, like every other fault here
            f"from_pretrained: {source} has rope settings {params!r:.60}, not a map")
    kind = params.get("rope_type", params.get("type"))
    if kind is None:  # no type: plain rotary, unless the map holds a scaling's fields
        scaling_fields = sorted(set(params) - {"rope_theta"})
        if scaling_fields:
            raise ValueError(f"from_pretrained: {source} has rotary scaling fields "
                             f"{scaling_fields} but no rope_type naming the scaling")
        kind = "default"
    if kind not in ("default", "llama3"):
        raise ValueError(f"from_pretrained: {source} asks for rotary scaling {kind!r}; "
                         "alphagrad's Llama has the plain one and Llama 3's ('llama3')")
    scaling = None
    if kind == "llama3":
        scaling = {"rope_type": "llama3", **{k: params.get(k) for k in LLAMA3_SCALING}}
    return {"rope_theta": params.get("rope_theta", 10000.0), "rope_scaling": scaling}


def hf_config(config: Any) -> dict[str, Any]:
    """A Hugging Face config.json for a ``LlamaConfig`` (or its dict)."""
    values = config if isinstance(config, Mapping) else dataclasses.asdict(config)
    out = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           **{key: values[field] for key, (field, _) in FIELDS.items()},
           "rope_theta": values["rope_theta"], "rope_scaling": values["rope_scaling"],
           "head_dim": values["n_embd"] // values["n_head"], "hidden_act": "silu",
           "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32"}
    return out


def _weight_files(folder: Path) -> list[Path]:
    single, index = folder / "model.safetensors", folder / INDEX
    if single.is_file():
        return [single]
    if not index.is_file():
        raise FileNotFoundError(f"from_pretrained: {folder} has neither model.safetensors nor "
                                f"{INDEX}")
    weight_map = _read_json(index, "the index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"from_pretrained: {index} has no weight_map")
    files = sorted(set(weight_map.values()))
    for name in files:
        if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
            raise ValueError(f"from_pretrained: {index} names shard {name!r}, not a file name in "
                             "the folder")
        if not (folder / name).is_file():
            raise FileNotFoundError(f"from_pretrained: {index} names {name}, which is not in "
                                    f"{folder}")
    return [folder / name for name in files]


def read_weights(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a folder's weights (one file or shards), floats widened to float32."""
    state_dict: dict[str, np.ndarray] = {}
    for path in _weight_files(Path(folder)):
        for name, array in load_safetensors(path).items():
            if name in state_dict:
                raise ValueError(f"from_pretrained: tensor {name!r} appears in two shards")
            if name.endswith("rotary_emb.inv_freq"):  # a buffer older exports saved; recomputed
                continue
            state_dict[name] = array.astype(np.float32) if array.dtype == np.float16 else array
    return state_dict


def read_folder(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(LlamaConfig fields, state dict) from a Hugging Face Llama folder."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"from_pretrained: {config_path} not found; a Hugging Face "
                                "Llama folder holds config.json and model.safetensors")
    hf = _read_json(config_path, "the config")
    if not isinstance(hf, dict):
        raise ValueError(f"from_pretrained: {config_path} is not a JSON object")  # noqa: TRY004
    return config_fields(hf, str(config_path)), read_weights(folder)


def write_folder(folder: str | os.PathLike, config: Any, state_dict: Mapping[str, Any],
                 tied: Mapping[str, str]) -> None:
    """config.json and model.safetensors that ``LlamaForCausalLM.from_pretrained`` reads (tied
    aliases left out, as Hugging Face saves them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config(config), indent=2) + "\n")
    weights = {k: v for k, v in state_dict.items() if k not in tied}
    save_safetensors(folder / "model.safetensors", weights, metadata={"format": "pt"})
