"""The backward engine: walk the graph once in reverse topological order, no recursion."""

from __future__ import annotations

import numpy as np

from alphagrad.autograd import hooks
from alphagrad.tensor.broadcast import unbroadcast
from alphagrad.tensor.memory import keep_freed_memory_by_default
from alphagrad.tensor.threads import step_done


def _topological_order(root) -> list:
    """Tensors that lead to ``root`` and carry a gradient, each after everything it feeds."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        ctx = tensor._ctx
        if ctx is not None:
            if ctx.freed:
                raise RuntimeError(
                    "backward: this graph was already freed by an earlier backward(); "
                    "pass retain_graph=True to the first call to backward through it twice"
                )
            for parent in ctx.inputs:
                if parent is not None and parent._requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    order.reverse()
    return order


def _fit(grad: np.ndarray, like) -> np.ndarray:
    """The one place where a gradient is summed back over broadcast axes and cast to its input."""
    grad = unbroadcast(grad, like.shape)
    if grad.dtype != like.data.dtype:
        grad = grad.astype(like.data.dtype)
    return grad


def run_backward(root, gradient: np.ndarray, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) · gradient into ``.grad`` of every leaf that requires grad."""
    from alphagrad.autograd.tensor import Tensor

    keep_freed_memory_by_default()  # each step then reuses the last one's buffers
    grads: dict[int, np.ndarray] = {id(root): gradient}
    handed_out: set[int] = set()  # a leaf's .grad must own its memory: optimizers edit it in place
    any_hooks = hooks.has_hooks()
    for tensor in _topological_order(root):
        grad = grads.pop(id(tensor), None)
        if grad is None:
            continue
        ctx = tensor._ctx
        if ctx is None or tensor._retains_grad:
            grad = _fit(grad, tensor)
            if tensor.grad is None:
                shared = grad is gradient or id(grad) in handed_out or not grad.flags.owndata
                if shared or not grad.flags.writeable:
                    grad = grad.copy()
                handed_out.add(id(grad))
                tensor.grad = Tensor._wrap(grad, False)
            else:
                tensor.grad.data = tensor.grad.data + grad
        if ctx is None:
            if any_hooks:
                hooks.run_hooks(tensor)
            continue
        input_grads = ctx.backward(ctx, grad)
        for parent, g in zip(ctx.inputs, input_grads):
            if g is None or parent is None or not parent._requires_grad:
                continue
            g = _fit(g, parent)
            previous = grads.get(id(parent))
            grads[id(parent)] = g if previous is None else previous + g
        if not retain_graph:
            ctx.free()
    step_done()  # a backward ends a training step: fit the thread count to the machine's load
