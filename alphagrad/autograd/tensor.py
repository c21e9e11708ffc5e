"""``Tensor``: an ndarray with a gradient and the op that made it.

    >>> import alphagrad as ag
    >>> x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4., 6.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from alphagrad.tensor.dtypes import get_default_dtype, is_float


class Tensor:
    """A multi-dimensional array that can record the operations applied to it for ``backward()``."""

    __slots__ = ("__weakref__", "_ctx", "_requires_grad", "_retains_grad", "data", "grad")
    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operator

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False):
        self.data = _as_array(data, dtype)
        self.grad: Tensor | None = None
        self._ctx = None
        self._retains_grad = False
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array: np.ndarray, requires_grad: bool) -> Tensor:
        """Fast path for ops: take ``array`` as it is."""
        t = object.__new__(Tensor)
        t.data, t.grad, t._ctx, t._retains_grad, t._requires_grad = array, None, None, False, requires_grad
        return t

    # ----------------------------------------------------------------- autograd state
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not is_float(self.data.dtype):
            raise TypeError(
                f"only float tensors can require gradients, this one is {self.data.dtype}"
            )
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after ``backward()``."""
        self._retains_grad = True

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` in each ``backward()`` once this leaf's ``.grad`` is final.

        Returns a handle whose ``remove()`` unregisters it (see ``autograd/hooks.py``).
        """
        from alphagrad.autograd.hooks import register

        return register(self, hook)

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data, False)

    def backward(self, gradient: Tensor | np.ndarray | None = None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into ``.grad`` of every leaf it depends on."""
        from alphagrad.autograd.engine import run_backward

        if not self._requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no grad_fn "
                "(were its inputs created with requires_grad=True, outside no_grad()?)"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad can be implicitly created only for a scalar output, this one has "
                    f"shape {self.shape}; pass gradient= of that shape"
                )
            gradient = np.ones_like(self.data)
        else:
            gradient = np.asarray(gradient.data if isinstance(gradient, Tensor) else gradient)
            if gradient.shape != self.shape:
                raise ValueError(
                    f"backward: gradient has shape {gradient.shape} but the tensor has shape {self.shape}"
                )
            gradient = gradient.astype(self.data.dtype, copy=False)
        run_backward(self, gradient, retain_graph)

    # ----------------------------------------------------------------- array facts
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        """The shape, or its length along ``dim`` (as ``torch.Tensor.size``)."""
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def numpy(self, force: bool = False) -> np.ndarray:
        """The underlying array (shared, not copied). As in PyTorch, a tensor that requires grad
        must be detached first (``x.detach().numpy()``) or asked with ``force=True``: writes into
        the array would bypass autograd."""
        if self._requires_grad and not force:
            raise RuntimeError(
                "numpy: this tensor requires grad; call x.detach().numpy() (or x.numpy(force=True))"
            )
        return self.data

    def item(self) -> float | int | bool:
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data.reshape(()))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(", precision=4)
        extras = []
        if self.data.dtype not in (get_default_dtype(), np.dtype(np.int64), np.dtype(np.bool_)):
            extras.append(f"dtype={self.data.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn={self._ctx!r}")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}{''.join(', ' + e for e in extras)})"


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Turn Python data, an ndarray or a Tensor into an array under the dtype policy."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.array(data, dtype=np.dtype(dtype))
    array = np.array(data)
    if array.dtype.kind == "f":
        if not isinstance(data, np.ndarray):  # Python floats take the default dtype
            array = array.astype(get_default_dtype(), copy=False)
        elif array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float32)
    elif array.dtype.kind in "iu":
        array = array.astype(np.int64, copy=False)
    elif array.dtype.kind not in "b":
        raise TypeError(f"tensor: cannot make a tensor from data of dtype {array.dtype}")
    return array


def _size(size: Sequence) -> tuple[int, ...]:
    """Accept both ``zeros(2, 3)`` and ``zeros((2, 3))``."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(n) for n in size)
