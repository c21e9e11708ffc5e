"""GELU in both of PyTorch's forms, alone or fused with the bias of the Linear before it.

``approximate="tanh"`` (GPT-2's): 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).
``approximate="none"`` (exact): x·Φ(x) = 0.5·x·(1 + erf(x/√2)).

The tanh form uses the identity 0.5·(1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)), so the only
transcendental is ``fast_exp``, which vectorises; the exact one takes Φ from ``normal_cdf``, which
vectorises too. Each form's value and derivative are written once, as element functions that the
kernels inline: the plain kernels work on flat arrays, the bias kernels on the rows of a GEMM's
output (adding the bias in the same pass forward, summing its gradient in the same pass backward).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange, types
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from alphagrad._jit import FASTMATH, kernel
from alphagrad.tensor.kernels._checks import float_array, output, rows, same_shape
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._normal import normal_cdf
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel
from alphagrad.tensor.threads import get_num_threads

# GELU spends ~20 flops on each element, so a second thread pays off on smaller inputs than for
# the memory-bound kernels (measured: the backward over 8192 elements 1.1x faster on two threads,
# over 4096 0.9x).
PARALLEL_MIN_SIZE = 1 << 13


# ----------------------------------------------------------------------------- element functions
# Each is inlined into the kernels where Numba compiles them (inline="always"): left to LLVM, the
# exact form's gradient stayed a call per element inside the two-level loop of
# _bias_gelu_erf_backward, which kept that loop scalar (768 x 512: 2.54 ms, inlined 0.22 ms).
def gelu_tanh(v):
    """The tanh form at one element (jitted code only)."""


def gelu_tanh_grad(v):
    """Its derivative: d/dv v·s(2u) = s + v·s·(1 - s)·2u'(v), s = sigmoid(2u)."""


def gelu_exact(v):
    """The exact form v·Φ(v) at one element (jitted code only)."""


def gelu_exact_grad(v):
    """Its derivative Φ(v) + v·φ(v)."""


def _constants(v, *values):
    """``values`` in the dtype of the float type ``v``, so float32 stays float32."""
    cast = as_dtype(v).type
    return tuple(cast(c) for c in values)


@overload(gelu_tanh, jit_options={"fastmath": set(FASTMATH)}, inline="always")
def _gelu_tanh(v):
    if isinstance(v, types.Float):
        two_k, cubic, one = _constants(v, 2.0 * math.sqrt(2.0 / math.pi), 0.044715, 1.0)
        return lambda v: v / (one + fast_exp(-two_k * (v + cubic * v * v * v)))


@overload(gelu_tanh_grad, jit_options={"fastmath": set(FASTMATH)}, inline="always")
def _gelu_tanh_grad(v):
    if isinstance(v, types.Float):
        two_k, cubic, one, three_cubic = _constants(
            v, 2.0 * math.sqrt(2.0 / math.pi), 0.044715, 1.0, 3.0 * 0.044715)

        def grad(v):
            v2 = v * v
            s = one / (one + fast_exp(-two_k * (v + cubic * v2 * v)))
            return s + v * s * (one - s) * two_k * (one + three_cubic * v2)
        return grad


@overload(gelu_exact, jit_options={"fastmath": set(FASTMATH)}, inline="always")
def _gelu_exact(v):
    if isinstance(v, types.Float):
        return lambda v: v * normal_cdf(v)


@overload(gelu_exact_grad, jit_options={"fastmath": set(FASTMATH)}, inline="always")
def _gelu_exact_grad(v):
    if isinstance(v, types.Float):
        inv_sqrt_2pi, half = _constants(v, 1.0 / math.sqrt(2.0 * math.pi), 0.5)
        return lambda v: normal_cdf(v) + v * inv_sqrt_2pi * fast_exp(-half * v * v)


# ----------------------------------------------------------------------------- kernels
@kernel(parallel=True)
def _gelu_forward(x, out):
    # x, out: (n,)
    for i in prange(x.size):
        out[i] = gelu_tanh(x[i])


@kernel(parallel=True)
def _gelu_backward(x, dout, dx):
    # x, dout, dx: (n,)
    for i in prange(x.size):
        dx[i] = dout[i] * gelu_tanh_grad(x[i])


@kernel(parallel=True)
def _gelu_erf_forward(x, out):
    # x, out: (n,)
    for i in prange(x.size):
        out[i] = gelu_exact(x[i])


@kernel(parallel=True)
def _gelu_erf_backward(x, dout, dx):
    # x, dout, dx: (n,)
    for i in prange(x.size):
        dx[i] = dout[i] * gelu_exact_grad(x[i])


@kernel(parallel=True)
def _bias_gelu_forward(h, bias, out):
    # h, out: (R, C); bias: (C,) or None, added to h in place (h becomes the pre-activation the
    # backward reads)
    R, C = h.shape
    for i in prange(R):
        for j in range(C):
            v = h[i, j]
            if bias is not None:
                v += bias[j]
                h[i, j] = v
            out[i, j] = gelu_tanh(v)


@kernel(parallel=True)
def _bias_gelu_backward(h, dout, P, dh, dbias_parts):
    # h, dout, dh: (R, C). The rows are split in P chunks and chunk p sums its bias gradient into
    # row p of dbias_parts (P, C), or None without a bias, so no two threads add into one element.
    R, C = h.shape
    for p in prange(P):
        for i in range(p * R // P, (p + 1) * R // P):
            for j in range(C):
                g = dout[i, j] * gelu_tanh_grad(h[i, j])
                dh[i, j] = g
                if dbias_parts is not None:
                    dbias_parts[p, j] += g


@kernel(parallel=True)
def _bias_gelu_erf_forward(h, bias, out):
    # as _bias_gelu_forward, exact form
    R, C = h.shape
    for i in prange(R):
        for j in range(C):
            v = h[i, j]
            if bias is not None:
                v += bias[j]
                h[i, j] = v
            out[i, j] = gelu_exact(v)


@kernel(parallel=True)
def _bias_gelu_erf_backward(h, dout, P, dh, dbias_parts):
    # as _bias_gelu_backward, exact form
    R, C = h.shape
    for p in prange(P):
        for i in range(p * R // P, (p + 1) * R // P):
            for j in range(C):
                g = dout[i, j] * gelu_exact_grad(h[i, j])
                dh[i, j] = g
                if dbias_parts is not None:
                    dbias_parts[p, j] += g


_KERNELS = {  # form: (forward, backward, bias forward, bias backward)
    "tanh": (_gelu_forward, _gelu_backward, _bias_gelu_forward, _bias_gelu_backward),
    "none": (_gelu_erf_forward, _gelu_erf_backward, _bias_gelu_erf_forward,
             _bias_gelu_erf_backward),
}
FORMS = tuple(_KERNELS)  # the values ``approximate`` takes
_SERIAL = {form: tuple(serial_twin(k) for k in ks) for form, ks in _KERNELS.items()}


def check_form(op: str, approximate: str) -> None:
    """ValueError naming ``op`` unless ``approximate`` is one of the GELU forms ("none", "tanh")."""
    if approximate not in _KERNELS:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")


def _kernels(op: str, approximate: str, size: int) -> tuple:
    check_form(op, approximate)
    return (_KERNELS if use_parallel(size, PARALLEL_MIN_SIZE) else _SERIAL)[approximate]


def gelu_forward(x: np.ndarray, out: np.ndarray | None = None,
                 approximate: str = "tanh") -> np.ndarray:
    """GELU of ``x``, any shape (tanh form unless ``approximate="none"``).

    >>> gelu_forward(np.array([0.0, 1.0], np.float32))
    array([0.      , 0.841192], dtype=float32)
    """
    x = float_array("gelu_forward", "x", x)
    forward = _kernels("gelu_forward", approximate, x.size)[0]
    out = output("gelu_forward", out, x.shape, x.dtype)
    forward(x.reshape(-1), out.reshape(-1))
    return out


def gelu_backward(x: np.ndarray, dout: np.ndarray, out: np.ndarray | None = None,
                  approximate: str = "tanh") -> np.ndarray:
    """Gradient of ``gelu_forward`` at ``x`` given the upstream gradient ``dout`` (same shape)."""
    x = float_array("gelu_backward", "x", x)
    dout = float_array("gelu_backward", "dout", dout, x.dtype)
    same_shape("gelu_backward", "dout", dout, x.shape)
    backward = _kernels("gelu_backward", approximate, x.size)[1]
    dx = output("gelu_backward", out, x.shape, x.dtype)
    backward(x.reshape(-1), dout.reshape(-1), dx.reshape(-1))
    return dx


def bias_gelu_forward(h: np.ndarray, bias: np.ndarray | None,
                      approximate: str = "tanh") -> np.ndarray:
    """GELU of ``h + bias`` over the last axis C, for a Linear's output ``h`` (..., C).

    ``h`` must be C-contiguous and is overwritten with ``h + bias`` (the pre-activation that
    ``bias_gelu_backward`` needs); ``bias`` is (C,) or None.

    >>> h = np.array([[-1.0, 0.0]], np.float32)
    >>> bias_gelu_forward(h, np.array([1.0, 1.0], np.float32)), h
    (array([[0.      , 0.841192]], dtype=float32), array([[0., 1.]], dtype=float32))
    """
    op = "bias_gelu_forward"
    h2 = _in_place_rows(op, h)
    if bias is not None:
        bias = float_array(op, "bias", bias, h.dtype)
        same_shape(op, "bias", bias, h.shape[-1:])
    forward = _kernels(op, approximate, h.size)[2]
    out = np.empty_like(h)
    forward(h2, bias, out.reshape(h2.shape))
    return out


def bias_gelu_backward(h: np.ndarray, dout: np.ndarray, has_bias: bool,
                       approximate: str = "tanh") -> tuple[np.ndarray, np.ndarray | None]:
    """Gradients ``(dh, dbias)`` of ``bias_gelu_forward`` from its pre-activation ``h`` and the
    upstream ``dout`` (same shape); ``dbias`` (C,) is None unless ``has_bias``."""
    op = "bias_gelu_backward"
    h = float_array(op, "h", h)
    h2 = rows(op, "h", h)
    dout = float_array(op, "dout", dout, h.dtype)
    same_shape(op, "dout", dout, h.shape)
    backward = _kernels(op, approximate, h.size)[3]
    # one chunk of rows per thread: every thread is busy and the partial sums stay few
    parts = max(1, min(h2.shape[0], get_num_threads())) \
        if use_parallel(h.size, PARALLEL_MIN_SIZE) else 1
    dbias_parts = np.zeros((parts, h2.shape[1]), h.dtype) if has_bias else None
    dh = np.empty_like(h)
    backward(h2, dout.reshape(h2.shape), parts, dh.reshape(h2.shape), dbias_parts)
    return dh, dbias_parts.sum(axis=0) if has_bias else None


def _in_place_rows(op: str, h) -> np.ndarray:
    if isinstance(h, np.ndarray) and not (h.flags.c_contiguous and h.flags.writeable):
        raise ValueError(f"{op}: h must be a writeable C-contiguous array: it is updated in place")
    return rows(op, "h", float_array(op, "h", h))
