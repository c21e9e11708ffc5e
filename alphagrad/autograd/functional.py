"""The differentiable functions, PyTorch's names and argument orders (``import alphagrad.functional as F``).

Each is also a ``Tensor`` method where PyTorch has one (``x.exp()``, ``x.sum(dim=1)``).
Arguments are normalised here, once; the ops in ``ops/`` see plain arrays.

    >>> import alphagrad as ag, alphagrad.functional as F
    >>> x = ag.randn(4, 10, requires_grad=True)
    >>> F.cross_entropy(x, ag.tensor([1, 0, 3, 9])).backward()
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple
from collections.abc import Sequence

import numpy as np

from alphagrad.autograd.ops import elementwise as ew
from alphagrad.autograd.ops import matmul as mm
from alphagrad.autograd.ops import movement as mv
from alphagrad.autograd.ops import nn as nnops
from alphagrad.autograd.ops import reduce as rd
from alphagrad.autograd.tensor import Tensor, _size
from alphagrad.tensor.dtypes import get_default_dtype, is_float
from alphagrad.tensor.kernels.gelu import check_form

Number = (int, float, bool, np.number)
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _lift(value, like: Tensor) -> Tensor:
    """A Python number as a 0-d tensor of ``like``'s dtype (float if the number is)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, Number):
        dtype = like.dtype
        if isinstance(value, (float, np.floating)) and not is_float(dtype):
            dtype = get_default_dtype()
        return Tensor._wrap(np.asarray(value, dtype=dtype), False)
    if isinstance(value, np.ndarray):
        return Tensor(value)
    raise TypeError(f"expected a Tensor or a number, got {type(value).__name__}")


def _binary(op, a, b, name: str) -> Tensor:
    a = _lift(a, b) if not isinstance(a, Tensor) else a
    b = _lift(b, a)
    if is_float(a.dtype) != is_float(b.dtype):  # int with float computes in the float's dtype
        a, b = (to(a, b.dtype), b) if is_float(b.dtype) else (a, to(b, a.dtype))
    try:
        return op.apply(a, b)
    except ValueError as e:
        if a.ndim and b.ndim and "broadcast" in str(e):
            raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None
        raise


def _axes(dim, ndim: int) -> tuple[int, ...] | None:
    if dim is None:
        return None
    if not isinstance(dim, (int, np.integer, tuple, list)):
        raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not isinstance(d, (int, np.integer)):
            raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")
        if not -builtins.max(ndim, 1) <= d < builtins.max(ndim, 1):
            raise IndexError(f"dim {d} is out of range for a tensor with {ndim} dims")
        out.append(int(d) % builtins.max(ndim, 1))
    return tuple(sorted(set(out))) if ndim else None


# ----------------------------------------------------------------------------- arithmetic
def add(a, b) -> Tensor:
    return _binary(ew.Add, a, b, "add")


def sub(a, b) -> Tensor:
    return add(a, neg(_lift(b, a)))


def mul(a, b) -> Tensor:
    return _binary(ew.Mul, a, b, "mul")


def div(a, b) -> Tensor:
    b = _lift(b, a)
    if not isinstance(a, Tensor):
        a = _lift(a, b)
    if not is_float(a.dtype) and not is_float(b.dtype):  # true division, as in PyTorch
        a = a.to(get_default_dtype())
    return mul(a, reciprocal(b))


def neg(x: Tensor) -> Tensor:
    return ew.Neg.apply(x)


def reciprocal(x: Tensor) -> Tensor:
    return pow(x.to(get_default_dtype()) if not is_float(x.dtype) else x, -1)


def pow(x, exponent) -> Tensor:
    """``x ** exponent``: a number exponent is a primitive, a tensor one goes through exp and log."""
    if isinstance(x, Tensor) and isinstance(exponent, Number):
        if not is_float(x.dtype) and (exponent < 0 or isinstance(exponent, float)):
            x = x.to(get_default_dtype())
        return ew.Pow.apply(x, exponent=exponent)
    if not isinstance(x, Tensor):
        x = _lift(x, exponent)
    return exp(mul(_lift(exponent, x), log(x)))


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy's rules (1-D promotion, broadcast batch axes)."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one dim, got shapes {a.shape} and {b.shape}")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({a.shape[-1]} != {inner_b})")
    return mm.MatMul.apply(a, b)


def exp(x: Tensor) -> Tensor:
    return ew.Exp.apply(x)


def log(x: Tensor) -> Tensor:
    return ew.Log.apply(x)


def sqrt(x: Tensor) -> Tensor:
    return ew.Sqrt.apply(x)


def rsqrt(x: Tensor) -> Tensor:
    return pow(x, -0.5)


def tanh(x: Tensor) -> Tensor:
    return ew.Tanh.apply(x)


def sin(x: Tensor) -> Tensor:
    return ew.Sin.apply(x)


def cos(x: Tensor) -> Tensor:
    return ew.Cos.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    return ew.Sigmoid.apply(x)


def relu(x: Tensor) -> Tensor:
    return ew.Relu.apply(x)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU; ``approximate="tanh"`` is GPT-2's form, ``"none"`` the exact erf form (PyTorch's default)."""
    check_form("gelu", approximate)
    return ew.Gelu.apply(x, approximate=approximate)


def silu(x: Tensor) -> Tensor:
    """x · sigmoid(x), one fused kernel (float inputs)."""
    if not is_float(x.dtype):
        raise TypeError(f"silu: expects a float tensor, got {x.dtype}")
    return ew.Silu.apply(x)


def abs(x: Tensor) -> Tensor:
    return ew.Abs.apply(x)


def clamp(x: Tensor, min=None, max=None) -> Tensor:
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    return ew.Clamp.apply(x, low=min, high=max)


def clamp_min(x: Tensor, min) -> Tensor:
    return clamp(x, min=min)


def clamp_max(x: Tensor, max) -> Tensor:
    return clamp(x, max=max)


def maximum(a: Tensor, b: Tensor) -> Tensor:
    return _binary(ew.Maximum, a, b, "maximum")


def minimum(a: Tensor, b: Tensor) -> Tensor:
    return neg(maximum(neg(_lift(a, b)), neg(_lift(b, a))))


def where(condition, a, b) -> Tensor:
    """Elements of ``a`` where ``condition`` holds, else of ``b``."""
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, bool)
    a = _lift(a, b) if not isinstance(a, Tensor) else a
    b = _lift(b, a)
    return ew.Where.apply(a, b, condition=condition)


# ----------------------------------------------------------------------------- reductions
def sum(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return rd.Sum.apply(x, axes=_axes(dim, x.ndim), keepdims=keepdim)


def mean(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = _axes(dim, x.ndim)
    count = x.numel() if axes is None else math.prod(x.shape[a] for a in axes)
    total = sum(x if is_float(x.dtype) else x.to(get_default_dtype()), dim, keepdim)
    return mul(total, 1.0 / count) if count else mul(total, float("nan"))


def _extremum(x: Tensor, dim, keepdim: bool, largest: bool):
    if x.numel() == 0:
        raise ValueError(f"{'max' if largest else 'min'}: the tensor is empty (shape {x.shape})")
    values = rd.Extremum.apply(x, axes=_axes(dim, x.ndim), keepdims=keepdim, largest=largest)
    if not isinstance(dim, int):
        return values
    pick = np.argmax if largest else np.argmin
    indices = pick(x.data, axis=dim, keepdims=keepdim) if x.ndim else np.asarray(0)
    return ValuesIndices(values, Tensor._wrap(np.asarray(indices, np.int64), False))


def max(x: Tensor, dim=None, keepdim: bool = False):
    """The largest element, or ``(values, indices)`` along an int ``dim`` (as ``torch.max``)."""
    return _extremum(x, dim, keepdim, True)


def min(x: Tensor, dim=None, keepdim: bool = False):
    """The smallest element, or ``(values, indices)`` along an int ``dim`` (as ``torch.min``)."""
    return _extremum(x, dim, keepdim, False)


def amax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return rd.Extremum.apply(x, axes=_axes(dim, x.ndim), keepdims=keepdim, largest=True)


def amin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return rd.Extremum.apply(x, axes=_axes(dim, x.ndim), keepdims=keepdim, largest=False)


def var(x: Tensor, dim=None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: int | None = None) -> Tensor:
    """Variance with Bessel's correction by default (``correction=1``), as PyTorch."""
    if correction is None:
        correction = 0 if unbiased is False else 1
    axes = _axes(dim, x.ndim)
    count = x.numel() if axes is None else math.prod(x.shape[a] for a in axes)
    centred = sub(x, mean(x, dim, keepdim=True))
    dof = count - correction
    return mul(sum(mul(centred, centred), dim, keepdim), 1.0 / dof if dof > 0 else float("nan"))


def std(x: Tensor, dim=None, unbiased: bool | None = None, keepdim: bool = False, *,
        correction: int | None = None) -> Tensor:
    return sqrt(var(x, dim, unbiased, keepdim, correction=correction))


def norm(x: Tensor, p: float | str = "fro", dim=None, keepdim: bool = False) -> Tensor:
    """The vector ``p``-norm over ``dim`` (all elements by default; "fro" is the 2-norm), as
    ``torch.norm``. The 2-norm's gradient at an all-zero input is 0, as in PyTorch."""
    if p == "fro":
        p = 2.0
    if not isinstance(p, Number) or p <= 0:
        raise ValueError(f"norm: p must be a positive number, inf or 'fro', got {p!r}")
    if p == math.inf:
        return amax(abs(x), dim, keepdim)
    if p == 1:
        return sum(abs(x), dim, keepdim)
    if p == 2:
        return rd.Norm2.apply(x, axes=_axes(dim, x.ndim), keepdims=keepdim)
    return pow(sum(pow(abs(x), p), dim, keepdim), 1.0 / p)


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    out = np.argmax(x.data, axis=dim, keepdims=keepdim if dim is not None else False)
    return Tensor._wrap(np.asarray(out, np.int64), False)


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    out = np.argmin(x.data, axis=dim, keepdims=keepdim if dim is not None else False)
    return Tensor._wrap(np.asarray(out, np.int64), False)


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> ValuesIndices:
    """``(values, indices)`` sorted along ``dim`` (as ``torch.sort``); ties keep their order."""
    if x.ndim == 0:
        raise ValueError("sort: the tensor needs at least one dim")
    axis = _axes(dim, x.ndim)[0]
    if descending:  # stable: ascending order of the flipped array, flipped back
        flipped = np.argsort(np.flip(x.data, axis), axis=axis, kind="stable")
        order = x.shape[axis] - 1 - np.flip(flipped, axis)
    else:
        order = np.argsort(x.data, axis=axis, kind="stable")
    indices = Tensor._wrap(order.astype(np.int64, copy=False), False)
    return ValuesIndices(gather(x, axis, indices), indices)


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> ValuesIndices:
    """The ``k`` largest (or smallest) elements along ``dim`` and their indices (as ``torch.topk``)."""
    if x.ndim == 0:
        raise ValueError("topk: the tensor needs at least one dim")
    axis = _axes(dim, x.ndim)[0]
    if not 0 <= k <= x.shape[axis]:
        raise ValueError(f"topk: k={k} is out of range for dim {dim} of size {x.shape[axis]} (shape {x.shape})")
    _, order = sort(x, axis, descending=largest)
    indices = getitem(order, (slice(None),) * axis + (slice(0, k),))
    return ValuesIndices(gather(x, axis, indices), indices)


def gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """``out[i][j] = x[index[i][j]][j]`` for ``dim=0`` and so on (as ``torch.gather``)."""
    idx = index.data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"gather: index must hold integers, got {idx.dtype}")
    if x.ndim == 0 or idx.ndim != x.ndim or builtins.any(
            i > n for d, (i, n) in enumerate(zip(idx.shape, x.shape)) if d != dim % x.ndim):
        raise ValueError(f"gather: index shape {idx.shape} does not fit input shape {x.shape} "
                         f"(same number of dims, no larger outside dim {dim})")
    axis = _axes(dim, x.ndim)[0]
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[axis]):
        raise IndexError(f"gather: index {idx.min() if idx.min() < 0 else idx.max()} is out of range "
                         f"for dim {dim} of size {x.shape[axis]}")
    if builtins.any(i < n for d, (i, n) in enumerate(zip(idx.shape, x.shape)) if d != axis):
        x = getitem(x, tuple(slice(None) if d == axis else slice(0, i) for d, i in enumerate(idx.shape)))
    return mv.Gather.apply(x, index=idx.astype(np.int64, copy=False), axis=axis)


def einsum(equation: str, *operands: Tensor) -> Tensor:
    """Einstein summation (as ``torch.einsum``): ``einsum("bij,bjk->bik", a, b)``; ``...`` and
    the implicit output (letters used once, in order) work as in NumPy."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    spec = equation.replace(" ", "")
    left, arrow, output = spec.partition("->")
    inputs = left.split(",")
    if len(inputs) != len(operands):
        raise ValueError(f"einsum: {equation!r} names {len(inputs)} operands, got {len(operands)}")
    letters = set(spec) - set(",->.")
    if not builtins.all(c.isalpha() for c in letters):
        raise ValueError(f"einsum: subscripts must be letters, got {equation!r}")
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in letters)
    lead = builtins.max([t.ndim - len(s.replace("...", "")) for s, t in zip(inputs, operands) if "..." in s],
                        default=0)
    ellipsis = "".join(next(spare) for _ in range(lead))
    explicit = []
    for subs, t in zip(inputs, operands):
        n = t.ndim - len(subs.replace("...", ""))
        subs = subs.replace("...", ellipsis[lead - n:] if n else "")
        if len(subs) != t.ndim:
            raise ValueError(f"einsum: subscripts {subs!r} do not match an operand of shape {t.shape}")
        explicit.append(subs)
    if arrow:
        output = output.replace("...", ellipsis)
    else:
        counts = "".join(explicit)
        output = ellipsis + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in ellipsis))
    try:
        return mm.Einsum.apply(*operands, subscripts=tuple(explicit), output=output)
    except ValueError as e:
        raise ValueError(f"einsum: {equation!r} with shapes {[t.shape for t in operands]}: {e}") from None


def logsumexp(x: Tensor, dim, keepdim: bool = False) -> Tensor:
    shift = Tensor._wrap(np.max(x.data, axis=_axes(dim, x.ndim), keepdims=True), False)
    out = add(log(sum(exp(sub(x, shift)), dim, keepdim=True)), shift)
    return out if keepdim else squeeze(out, dim)


# ----------------------------------------------------------------------------- shape
def reshape(x: Tensor, *shape) -> Tensor:
    shape = _size(shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
    known = math.prod(n for n in shape if n != -1)
    if (-1 in shape and (known == 0 or x.numel() % known)) or (-1 not in shape and known != x.numel()):
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.numel()} elements) to {shape}")
    return mv.Reshape.apply(x, shape=shape)


view = reshape


def permute(x: Tensor, *dims) -> Tensor:
    dims = _size(dims)
    if sorted(d % builtins.max(x.ndim, 1) for d in dims) != list(range(x.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {x.ndim} dims of shape {x.shape}")
    return mv.Permute.apply(x, dims=tuple(d % x.ndim for d in dims))


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    a, b = (_axes(d, x.ndim)[0] for d in (dim0, dim1))
    dims = list(range(x.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return mv.Permute.apply(x, dims=tuple(dims))


def expand(x: Tensor, *sizes) -> Tensor:
    sizes = _size(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: {sizes} has fewer dims than the tensor's shape {x.shape}")
    shape = tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(sizes))
    for i, n in enumerate(x.shape):
        if n != 1 and n != shape[lead + i]:
            raise ValueError(f"expand: cannot expand shape {x.shape} to {sizes}")
    return mv.Expand.apply(x, shape=shape)


def repeat(x: Tensor, *sizes) -> Tensor:
    """Tile ``x`` ``sizes[i]`` times along each dim (as ``torch.Tensor.repeat``: NumPy's ``tile``)."""
    sizes = _size(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: {len(sizes)} sizes for a tensor with {x.ndim} dims; give at least one per dim")
    shape = (1,) * (len(sizes) - x.ndim) + x.shape
    spread = reshape(x, tuple(n for s in shape for n in (1, s)))  # (1, s0, 1, s1, ...)
    tiled = expand(spread, tuple(n for r, s in zip(sizes, shape) for n in (r, s)))
    return reshape(tiled, tuple(r * s for r, s in zip(sizes, shape)))


def squeeze(x: Tensor, dim=None) -> Tensor:
    axes = _axes(dim, x.ndim)
    if axes is None:
        shape = tuple(n for n in x.shape if n != 1)
    else:
        shape = tuple(n for i, n in enumerate(x.shape) if not (i in axes and n == 1))
    return reshape(x, shape)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    if not -x.ndim - 1 <= dim <= x.ndim:
        raise IndexError(f"unsqueeze: dim {dim} is out of range for a tensor with {x.ndim} dims")
    dim = dim % (x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return reshape(x, x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:])


def contiguous(x: Tensor) -> Tensor:
    return x if x.data.flags.c_contiguous else mv.Contiguous.apply(x)


def _index_part(part):
    if isinstance(part, Tensor):
        part = part.data
    if isinstance(part, (list, np.ndarray)):
        array = np.asarray(part)
        if array.dtype.kind not in "iub" and array.size:
            raise TypeError(f"index arrays must hold integers or booleans, got {array.dtype}")
        return array if array.dtype.kind == "b" else array.astype(np.int64)
    if part is None or part is Ellipsis or isinstance(part, (slice, int, np.integer)) and not isinstance(part, bool):
        return part
    raise TypeError(
        f"tensor indices must be ints, slices, None, ..., or integer/boolean tensors; got {type(part).__name__}"
    )


def getitem(x: Tensor, index) -> Tensor:
    index = tuple(_index_part(p) for p in (index if isinstance(index, tuple) else (index,)))
    advanced = builtins.any(isinstance(p, np.ndarray) and p.dtype.kind != "b" for p in index)
    try:
        return mv.GetItem.apply(x, index=index, advanced=advanced)
    except IndexError as e:
        raise IndexError(f"index into a tensor of shape {x.shape}: {e}") from None


def setitem(x: Tensor, index, value) -> None:
    """``x[index] = value`` in place, for tensors outside the graph (as PyTorch, also a leaf that
    requires grad inside ``no_grad()``, e.g. to initialise weights)."""
    from alphagrad.autograd.grad_mode import is_grad_enabled

    if x._ctx is not None or (x.requires_grad and is_grad_enabled()):
        raise RuntimeError(
            f"item assignment into a tensor that {'is part of a graph' if x._ctx else 'requires grad'} "
            "would break its gradient; assign inside `with ag.no_grad():`, or build a new tensor "
            "(ag.where, masked_fill, cat)"
        )
    index = tuple(_index_part(p) for p in (index if isinstance(index, tuple) else (index,)))
    try:
        x.data[index] = value.data if isinstance(value, Tensor) else value
    except (IndexError, ValueError) as e:
        raise type(e)(f"item assignment into a tensor of shape {x.shape}: {e}") from None


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dim (as ``torch.cat``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    first = tensors[0]
    axis = _axes(dim, first.ndim)[0]
    for t in tensors[1:]:
        if t.ndim != first.ndim or builtins.any(
            a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis
        ):
            raise ValueError(f"cat: shapes {first.shape} and {t.shape} differ outside dim {dim}")
    return mv.Cat.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join same-shape tensors along a new dim (as ``torch.stack``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors need one shape, got {tensors[0].shape} and {t.shape}")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def split(x: Tensor, split_size_or_sections, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of size ``split_size`` (the last may be smaller), or of the listed sizes."""
    axis = _axes(dim, x.ndim)[0]
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [builtins.min(step, n - s) for s in range(0, n, step)]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n}, the length of dim {dim}")
    pieces, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        pieces.append(getitem(x, index))
        start += size
    return tuple(pieces)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    n = x.shape[_axes(dim, x.ndim)[0]]
    return split(x, -(-n // chunks) if n else 1, dim)


def tril(x: Tensor, diagonal: int = 0) -> Tensor:
    return mv.Triangle.apply(x, diagonal=diagonal, lower=True)


def triu(x: Tensor, diagonal: int = 0) -> Tensor:
    return mv.Triangle.apply(x, diagonal=diagonal, lower=False)


def masked_fill(x: Tensor, mask, value: float) -> Tensor:
    mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got {mask.dtype}")
    return mv.MaskedFill.apply(x, mask=mask, value=value)


# ----------------------------------------------------------------------------- neural-network ops
def softmax(x: Tensor, dim: int = -1) -> Tensor:
    axis = _axes(dim, x.ndim)[0] if x.ndim else 0
    if axis == x.ndim - 1 or x.ndim == 0:
        return nnops.Softmax.apply(x)
    return transpose(nnops.Softmax.apply(transpose(x, axis, -1)), axis, -1)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return sub(x, logsumexp(x, dim, keepdim=True))


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims, then scale and shift."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} does not end the input shape {x.shape}")
    if len(normalized_shape) == 1:
        return nnops.LayerNorm.apply(x, weight, bias, eps=eps)
    flat = (math.prod(normalized_shape),)
    out = nnops.LayerNorm.apply(
        reshape(x, x.shape[: x.ndim - len(normalized_shape)] + flat),
        None if weight is None else reshape(weight, flat),
        None if bias is None else reshape(bias, flat),
        eps=eps,
    )
    return reshape(out, x.shape)


def rms_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x²) + eps) · weight over the last dim, as ``torch.nn.functional.rms_norm``
    (``eps=None``: the dtype's machine epsilon, as PyTorch)."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(normalized_shape) != 1 or x.shape[-1:] != normalized_shape:
        raise ValueError(f"rms_norm: normalized_shape {normalized_shape} must be the last dim of the "
                         f"input shape {x.shape}")
    eps = float(np.finfo(x.dtype).eps) if eps is None else eps
    return nnops.RMSNorm.apply(x, weight, eps=eps)


def rotary_embedding(x: Tensor, cos: np.ndarray, sin: np.ndarray) -> Tensor:
    """Rotary position embedding of heads ``x`` (B, T, NH, hs) in Hugging Face Llama's half-split
    layout; ``cos``, ``sin`` (T, hs // 2) hold each position's angles (``rope_tables``)."""
    if x.ndim != 4 or x.shape[-1] % 2:
        raise ValueError(f"rotary_embedding: x must be (B, T, NH, hs) with an even hs, got {x.shape}")
    cos, sin = _rope_tables("rotary_embedding", x, cos, sin)
    return nnops.RotaryEmbedding.apply(x, cos=cos, sin=sin)


def _rope_tables(op: str, x: Tensor, cos, sin) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin as arrays of x's dtype, checked to be (T, hs // 2) for x (B, T, heads, hs)."""
    cos = cos.data if isinstance(cos, Tensor) else np.asarray(cos)
    sin = sin.data if isinstance(sin, Tensor) else np.asarray(sin)
    if cos.shape != (x.shape[1], x.shape[3] // 2) or sin.shape != cos.shape:
        raise ValueError(f"{op}: cos and sin must be (T, hs // 2) = "
                         f"{(x.shape[1], x.shape[3] // 2)}, got {cos.shape} and {sin.shape}")
    return cos.astype(x.dtype, copy=False), sin.astype(x.dtype, copy=False)


def swiglu(gate: Tensor, up: Tensor | None = None) -> Tensor:
    """silu(gate) · up in one fused kernel (Llama's MLP activation), gate and up of one shape;
    or, with ``up`` None, gate and up as the two halves of ``gate``'s last axis (as
    ``torch.nn.functional.glu``), the output of one projection: (..., 2H) -> (..., H)."""
    if up is not None:
        if gate.shape != up.shape:
            raise ValueError(f"swiglu: gate {gate.shape} and up {up.shape} must have one shape")
        gate = cat([gate, up], dim=-1)
    if gate.ndim == 0 or gate.shape[-1] % 2:
        raise ValueError(f"swiglu: the last axis of {gate.shape} must split into gate and up halves")
    return nnops.SwiGLU.apply(gate)


def cat_rows(tensors: Sequence[Tensor]) -> Tensor:
    """``cat(tensors, 0)`` of 2-D tensors of one width, without a copy when their arrays are
    consecutive rows of one buffer (as Llama keeps its q, k, v weights): the result is then a
    view of them, for reading only (a weight matrix for one GEMM)."""
    if not tensors or any(t.ndim != 2 or t.shape[1] != tensors[0].shape[1] for t in tensors):
        raise ValueError(f"cat_rows: expected 2-D tensors of one width, got "
                         f"{[t.shape for t in tensors]}")
    return nnops.CatRows.apply(*tensors)


def rotary_self_attention(qkv: Tensor, cos: np.ndarray, sin: np.ndarray, n_head: int,
                          n_kv_head: int, scale: float | None = None) -> Tensor:
    """Causal self-attention with rotary positions from a fused projection ``qkv`` (B, T,
    NH + 2·NKV, hs), q heads then k then v, to (B, T, NH·hs); ``cos``, ``sin`` (T, hs // 2) as for
    ``rotary_embedding``, NKV dividing NH (grouped-query attention when smaller)."""
    if qkv.ndim != 4 or qkv.shape[2] != n_head + 2 * n_kv_head or n_kv_head < 1 \
            or n_head % n_kv_head or qkv.shape[3] % 2:
        raise ValueError(f"rotary_self_attention: qkv must be (B, T, n_head + 2·n_kv_head, hs) "
                         f"with an even hs and n_kv_head dividing n_head, got {qkv.shape} for "
                         f"n_head={n_head}, n_kv_head={n_kv_head}")
    cos, sin = _rope_tables("rotary_self_attention", qkv, cos, sin)
    scale = 1.0 / math.sqrt(qkv.shape[3]) if scale is None else scale
    return nnops.RotarySelfAttention.apply(qkv, cos=cos, sin=sin, n_head=n_head,
                                           n_kv_head=n_kv_head, scale=scale)


def _check_fits(op: str, x: Tensor, weight: Tensor) -> None:
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"{op}: input shape {x.shape} does not fit weight shape {weight.shape}")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with weight (out_features, in_features)."""
    _check_fits("linear", x, weight)
    return mm.Linear.apply(x, weight, bias, None)


def residual_linear(residual: Tensor, x: Tensor, weight: Tensor,
                    bias: Tensor | None = None) -> Tensor:
    """``residual + linear(x, weight, bias)`` fused: the residual is added as each piece of the
    product is written, not in a pass of its own (a transformer block's residual connection).

    >>> x = F.residual_linear(x, y, proj.weight, proj.bias)  # x + proj(y)
    """
    _check_fits("residual_linear", x, weight)
    if residual.shape != x.shape[:-1] + (weight.shape[0],):
        raise ValueError(f"residual_linear: residual shape {residual.shape} is not the output's, "
                         f"{x.shape[:-1] + (weight.shape[0],)}")
    return mm.Linear.apply(x, weight, bias, residual)


def linear_gelu(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                approximate: str = "none") -> Tensor:
    """``gelu(linear(x, weight, bias), approximate)`` fused: the bias and the GELU are applied as
    each piece of the product is written (and take one pass backward), as in a transformer's MLP.

    >>> h = F.linear_gelu(x, fc.weight, fc.bias, approximate="tanh")  # GPT-2's MLP
    """
    _check_fits("linear_gelu", x, weight)
    check_form("linear_gelu", approximate)
    return mm.LinearGelu.apply(x, weight, bias, approximate=approximate)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` picked by the integer tensor ``input``."""
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {idx.dtype}")
    return nnops.Embedding.apply(weight, idx=idx.astype(np.int64, copy=False))


def cross_entropy(input: Tensor, target: Tensor, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between logits ``input`` (N, C) or (C,) and class indices ``target`` (N,) or ().
    As in PyTorch, the mean over targets that are all ``ignore_index`` is NaN (a GPT's or Llama's
    own loss returns 0.0 there instead)."""
    targets = target.data if isinstance(target, Tensor) else np.asarray(target)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold class indices (integers), got {targets.dtype}")
    if input.ndim == 1 and targets.ndim == 0:  # one sample
        losses = cross_entropy(reshape(input, 1, -1), targets.reshape(1), ignore_index, reduction, label_smoothing)
        return reshape(losses, ()) if reduction == "none" else losses
    if input.ndim != 2 or targets.shape != input.shape[:1]:
        raise ValueError(
            f"cross_entropy: expected input (N, C) and target (N,), got {input.shape} and {targets.shape}; "
            "flatten first, e.g. logits.view(-1, logits.size(-1)), targets.view(-1)"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    return nnops.CrossEntropy.apply(
        input, targets=targets.astype(np.int64, copy=False), ignore_index=ignore_index,
        reduction=reduction, label_smoothing=float(label_smoothing),
    )


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or summed, or elementwise) squared error (as ``torch.nn.functional.mse_loss``)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    target = _lift(target, input)
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape {target.shape} differ")
    diff = sub(input, target)
    squared = mul(diff, diff)
    return squared if reduction == "none" else (mean(squared) if reduction == "mean" else sum(squared))


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero elements with probability ``p`` and scale the rest by ``1/(1-p)`` while training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return mul(x, 0.0)
    return nnops.Dropout.apply(x, p=p)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
    """Fused causal attention: q (B, NH, Tq, hs), k and v (B, NKV, Tk, hs) -> (B, NH, Tq, hs).

    With fewer queries than keys (a KV cache) query i sees keys up to i + Tk − Tq (the queries
    are the last ones). With NKV < NH (grouped-query attention; NKV divides NH) query head h
    reads key/value head h // (NH // NKV).

    >>> q, kv = ag.randn(1, 4, 3, 8), ag.randn(1, 2, 3, 8)
    >>> F.causal_attention(q, kv, kv).shape
    (1, 4, 3, 8)
    """
    if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape or q.shape[0] != k.shape[0] \
            or q.shape[3] != k.shape[3] or q.shape[2] > k.shape[2] or k.shape[1] == 0 \
            or q.shape[1] % k.shape[1]:
        raise ValueError(f"causal_attention: expected q (B, NH, Tq, hs), k and v (B, NKV, Tk, hs) "
                         f"with Tq <= Tk and NKV dividing NH, got {q.shape}, {k.shape}, {v.shape}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return nnops.CausalAttention.apply(q, k, v, scale=scale)


def fused_self_attention(qkv: Tensor, n_head: int, scale: float | None = None) -> Tensor:
    """Causal self-attention from a fused projection qkv (B, T, 3·C) to (B, T, C), heads split inside;
    scores scaled by ``scale`` (default 1/sqrt(hs))."""
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * n_head):
        raise ValueError(f"fused_self_attention: qkv shape {qkv.shape} is not (B, T, 3·C) with C divisible by "
                         f"n_head={n_head}")
    scale = 1.0 / math.sqrt(qkv.shape[-1] // (3 * n_head)) if scale is None else scale
    return nnops.FusedSelfAttention.apply(qkv, n_head=n_head, scale=scale)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    """softmax(q kᵀ · scale + mask) v, as ``torch.nn.functional.scaled_dot_product_attention``.

    Causal attention without a mask or dropout over (B, NH, T, hs) runs as one fused kernel.
    ``enable_gqa=True`` lets key and value have fewer heads (axis -3) than the query, a number
    that divides the query's: each key/value head serves a group of consecutive query heads.
    """
    heads, kv_heads = (x.shape[-3] if x.ndim >= 3 else 1 for x in (query, key))
    if kv_heads != heads and not (enable_gqa and kv_heads and heads % kv_heads == 0):
        raise ValueError(f"scaled_dot_product_attention: query has {heads} heads and key "
                         f"{kv_heads} (axis -3); they must match, or with enable_gqa=True the "
                         "key's must divide the query's")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if is_causal and attn_mask is None and dropout_p == 0.0 and query.ndim == 4 \
            and query.shape[-2] == key.shape[-2]:
        return causal_attention(query, key, value, scale)
    if kv_heads != heads:
        key, value = (_repeat_heads(x, heads // kv_heads) for x in (key, value))
    scores = mul(matmul(query, transpose(key, -2, -1)), scale)
    if is_causal:
        Tq, Tk = query.shape[-2], key.shape[-2]
        scores = masked_fill(scores, ~np.tril(np.ones((Tq, Tk), dtype=bool)), float("-inf"))
    if attn_mask is not None:
        mask = attn_mask.data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
        scores = masked_fill(scores, ~mask, float("-inf")) if mask.dtype == np.bool_ else add(scores, attn_mask)
    weights = dropout(softmax(scores, -1), dropout_p, training=dropout_p > 0)
    return matmul(weights, value)


def _repeat_heads(x: Tensor, times: int) -> Tensor:
    """(..., H, T, hs) -> (..., H·times, T, hs), each head repeated ``times`` times in place."""
    *lead, H, T, hs = x.shape
    return reshape(expand(unsqueeze(x, -3), *lead, H, times, T, hs), *lead, H * times, T, hs)


# ----------------------------------------------------------------------------- casts and comparisons
_DEVICES = ("cpu",)


def _device(value) -> bool:
    """True for a device name (only the CPU is there); an error for an accelerator."""
    if not isinstance(value, str):
        return False
    name = value.split(":")[0]
    if name in _DEVICES:
        return True
    if name in ("cuda", "mps", "xpu", "hip", "meta", "xla"):
        raise ValueError(f"to: alphagrad runs on the CPU only, there is no {value!r} device")
    return False


def to(x: Tensor, *args, dtype=None, device=None, copy: bool = False) -> Tensor:
    """A tensor of ``dtype`` (the same tensor if it already is), as ``torch.Tensor.to``:
    ``x.to("float64")``, ``x.to(other)``, ``x.to("cpu")``, ``x.to(device="cpu", dtype=...)``."""
    for arg in args:
        if isinstance(arg, Tensor):
            dtype = arg.dtype
        elif not _device(arg):
            dtype = arg
    if device is not None and not _device(str(device)):
        raise ValueError(f"to: unknown device {device!r}; alphagrad runs on the CPU ('cpu')")
    if dtype is None:
        return clone(x) if copy else x
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"to: {dtype!r} is neither a dtype nor a device") from None
    if dtype == x.dtype:
        return clone(x) if copy else x
        return x
    if not is_float(dtype) or not x.requires_grad:
        return Tensor._wrap(x.data.astype(dtype), x.requires_grad and is_float(dtype))
    return ew.Cast.apply(x, dtype=dtype)


def clone(x: Tensor) -> Tensor:
    return ew.Cast.apply(x, dtype=x.dtype)


def _compare(ufunc):
    def compare(a, b) -> Tensor:
        b = b.data if isinstance(b, Tensor) else b
        return Tensor._wrap(np.asarray(ufunc(a.data, b)), False)

    return compare


eq, ne, lt, le, gt, ge = (_compare(u) for u in (np.equal, np.not_equal, np.less, np.less_equal,
                                                 np.greater, np.greater_equal))



def _reflect(fn):
    return lambda self, other: fn(_lift(other, self), self)


_METHODS = {
    "__add__": add, "__radd__": _reflect(add), "__sub__": sub, "__rsub__": _reflect(sub),
    "__mul__": mul, "__rmul__": _reflect(mul), "__truediv__": div, "__rtruediv__": _reflect(div),
    "__pow__": pow, "__rpow__": _reflect(pow), "__matmul__": matmul, "__rmatmul__": _reflect(matmul),
    "__neg__": neg, "__getitem__": getitem, "__eq__": eq, "__ne__": ne, "__lt__": lt, "__le__": le,
    "__gt__": gt, "__ge__": ge, "__abs__": abs,
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "neg": neg, "matmul": matmul,
    "reciprocal": reciprocal, "exp": exp, "log": log, "sqrt": sqrt, "rsqrt": rsqrt, "tanh": tanh,
    "sigmoid": sigmoid, "relu": relu, "abs": abs, "clamp": clamp, "maximum": maximum, "minimum": minimum,
    "sum": sum, "mean": mean, "max": max, "min": min, "amax": amax, "amin": amin, "var": var, "std": std,
    "argmax": argmax, "argmin": argmin, "logsumexp": logsumexp, "reshape": reshape, "view": view,
    "permute": permute, "transpose": transpose, "expand": expand, "squeeze": squeeze,
    "unsqueeze": unsqueeze, "flatten": flatten, "contiguous": contiguous, "split": split, "chunk": chunk,
    "tril": tril, "triu": triu, "masked_fill": masked_fill, "softmax": softmax, "log_softmax": log_softmax,
    "to": to, "clone": clone, "sin": sin, "cos": cos, "clamp_min": clamp_min, "clamp_max": clamp_max,
    "norm": norm, "sort": sort, "topk": topk, "gather": gather, "repeat": repeat, "__setitem__": setitem, "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
}
for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
Tensor.T = property(lambda self: permute(self, tuple(reversed(range(self.ndim)))))
Tensor.mT = property(lambda self: transpose(self, -2, -1))
Tensor.device = property(lambda self: "cpu")
Tensor.cpu = lambda self: self
Tensor.float = lambda self: to(self, np.float32)
Tensor.double = lambda self: to(self, np.float64)
Tensor.long = lambda self: to(self, np.int64)
Tensor.bool = lambda self: to(self, np.bool_)
Tensor.type_as = lambda self, other: to(self, other.dtype)
Tensor.expand_as = lambda self, other: expand(self, other.shape)
Tensor.view_as = lambda self, other: reshape(self, other.shape)
