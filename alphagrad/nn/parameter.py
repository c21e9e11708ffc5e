"""``Parameter``: a tensor that a ``Module`` owns and an optimizer updates.

    >>> w = Parameter(np.zeros((3, 4), np.float32))
    >>> w.requires_grad
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alphagrad.autograd.tensor import Tensor, _as_array
from alphagrad.tensor.dtypes import FLOAT_DTYPES


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and is found by ``Module.parameters()``.

    A float ndarray (or Tensor) is shared, not copied, as ``torch.nn.Parameter`` shares;
    other data goes through ``ag.tensor``'s dtype rules.
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True):
        array = data.data if isinstance(data, Tensor) else data
        shared = isinstance(array, np.ndarray) and array.dtype in FLOAT_DTYPES
        self.data = np.ascontiguousarray(array) if shared else _as_array(array)
        self.grad, self._ctx, self._retains_grad, self._requires_grad = None, None, False, False
        self.requires_grad = requires_grad

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
