"""A checkpoint's weights as one safetensors file, and back: what ``alphagrad export`` writes
and what ``sample``, ``eval`` and ``load_model`` read.

    save_weights("model.safetensors", load_checkpoint("runs/x/checkpoints/best.ckpt"))
    ckpt = load_weights("model.safetensors")       # a Checkpoint without training state

The tensors keep our state-dict names, tied aliases stored once (as Hugging Face's files do);
the metadata holds the model kind and config, the tied aliases and the tokenizer (JSON strings),
so the file is self-contained like the checkpoint it came from.
"""

from __future__ import annotations

import json
from pathlib import Path

from alphagrad.nn.safetensors import (
    SafetensorsError,
    load_safetensors,
    read_header,
    save_safetensors,
)
from alphagrad.train.checkpoint import Checkpoint, CheckpointError

FORMAT = "alphagrad"


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` looks like a safetensors file (a length, then a JSON header)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def save_weights(path: str | Path, ckpt: Checkpoint) -> int:
    """Write ``ckpt``'s weights and what it takes to use them; returns the tensor count."""
    weights = {k: v for k, v in ckpt.model_state.items() if k not in ckpt.tied}
    metadata = {"format": FORMAT, "model_kind": ckpt.model_kind,
                "model_config": json.dumps(ckpt.model_config), "tied": json.dumps(ckpt.tied),
                "library_version": ckpt.library_version}
    if ckpt.tokenizer is not None:
        metadata["tokenizer"] = json.dumps(ckpt.tokenizer)
    save_safetensors(path, weights, metadata=metadata)
    return len(weights)


def load_weights(path: str | Path) -> Checkpoint:
    """A file ``save_weights`` wrote, as a Checkpoint (no optimizer or training state)."""
    try:
        _, metadata, _ = read_header(path)
        if metadata.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} is a safetensors file without alphagrad's metadata (model kind and "
                "config); for Hugging Face GPT-2 weights use alphagrad import-hf on their folder, "
                "or GPT.from_hf_state_dict(load_safetensors(path))")
        config, tied = json.loads(metadata["model_config"]), json.loads(metadata.get("tied", "{}"))
        tokenizer = json.loads(metadata["tokenizer"]) if "tokenizer" in metadata else None
        if not isinstance(config, dict) or not isinstance(tied, dict) \
                or not all(isinstance(v, str) for v in tied.values()):
            raise KeyError("model_config and tied must be JSON objects")
        state = load_safetensors(path)
    except (KeyError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: damaged alphagrad metadata ({e!r:.200})") from None
    except SafetensorsError as e:
        raise CheckpointError(str(e)) from None
    for alias, canonical in tied.items():
        if canonical not in state:
            raise CheckpointError(f"{path}: tied alias {alias!r} points to missing {canonical!r}")
        state[alias] = state[canonical]
    return Checkpoint(model_kind=metadata.get("model_kind", "gpt"), model_config=config,
                      model_state=state, optimizer=None, train_state=None, tokenizer=tokenizer,
                      metrics={}, library_version=metadata.get("library_version", ""),
                      version=0, tied=tied)
