"""``save`` / ``load``: PyTorch's names for tensors and state dicts on disk, as safetensors.

Nothing is pickled, so loading a file never runs code from it; what a file can hold is a tensor
or a flat mapping of names to tensors (a ``state_dict``).

    >>> ag.save(model.state_dict(), "model.safetensors")
    >>> model.load_state_dict(ag.load("model.safetensors"))
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from alphagrad.autograd.tensor import Tensor
from alphagrad.nn.safetensors import load_safetensors, read_header, save_safetensors

_SINGLE = "alphagrad.single_tensor"  # metadata key naming the one tensor a file holds


def save(obj: Tensor | Mapping[str, Tensor], f: str | os.PathLike) -> None:
    """Write a tensor, or a mapping of names to tensors (e.g. ``model.state_dict()``), to ``f``."""
    if isinstance(obj, (Tensor, np.ndarray)):
        save_safetensors(f, {"tensor": obj}, {_SINGLE: "tensor"})
        return
    if not isinstance(obj, Mapping):
        hint = " (pass model.state_dict())" if hasattr(obj, "state_dict") else ""
        raise TypeError(f"save: expected a Tensor or a mapping of names to tensors{hint}, "
                        f"got {type(obj).__name__}; files are safetensors, which hold tensors only")
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, (Tensor, np.ndarray)):
            raise TypeError(f"save: entry {name!r} is a {type(value).__name__}, not a tensor; a file "
                            "holds a flat mapping of names to tensors (for a whole training state use "
                            "alphagrad.train's checkpoints)")
    save_safetensors(f, obj)


def load(f: str | os.PathLike) -> Tensor | dict[str, Tensor]:
    """Read what ``save`` wrote (or any safetensors file): a tensor, or a dict of tensors."""
    _, metadata, _ = read_header(f)
    tensors = {name: Tensor._wrap(array, False) for name, array in load_safetensors(f).items()}
    single = metadata.get(_SINGLE)
    return tensors[single] if single in tensors and len(tensors) == 1 else tensors
