"""``Function``: one differentiable op, its forward directly above its backward.

Subclasses define two static methods over NumPy arrays::

    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.x = x
            return x**3

        @staticmethod
        def backward(ctx, grad):
            return (3 * ctx.x**2 * grad,)

``backward`` returns one array (or None) per tensor input, in the input's shape or in any
shape it broadcasts to: the engine sums broadcast gradients back in one place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alphagrad.autograd.grad_mode import _GradMode


class Function:
    """Base class of every op; an instance is the graph node (the ``ctx``) of one call."""

    inputs: tuple
    freed: bool = False

    @staticmethod
    def forward(ctx: Function, *arrays: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Function, grad: np.ndarray) -> tuple:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **kwargs: Any):
        """Run ``forward`` on the inputs' arrays and record the node when a gradient is needed.

        ``inputs`` are Tensors or None (an absent optional input, such as a missing bias).
        """
        ctx = cls()
        out = cls.forward(ctx, *[None if t is None else t.data for t in inputs], **kwargs)
        requires_grad = _GradMode.enabled and any(
            t is not None and t._requires_grad for t in inputs
        )
        result = Tensor._wrap(out, requires_grad)
        if requires_grad:
            ctx.inputs = inputs
            result._ctx = ctx
        return result

    def needs_grad(self, i: int) -> bool:
        """Whether input ``i`` wants a gradient (lets backward skip work)."""
        t = self.inputs[i]
        return t is not None and t._requires_grad

    def free(self) -> None:
        """Drop saved arrays after backward, keeping only what the engine needs to report reuse."""
        self.__dict__.clear()
        self.freed = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__}Backward>"


from alphagrad.autograd.tensor import Tensor
