"""Rotary position embedding in Hugging Face Llama's half-split layout.

Each head vector of size hs is read as two halves (x1, x2); pair (x1[j], x2[j]) at position t is
rotated by the angle t·inv_freq[j]: (x1·cos − x2·sin, x2·cos + x1·sin). A rotation's gradient
is the rotation by the opposite angle, so forward and backward are one kernel with the sign of
sin as an argument. Only the first ``heads`` heads turn (q and k in a fused qkv buffer); the
rest (v) are copied, so attention reads all three from one array.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output, same_shape
from alphagrad.tensor.kernels._serial import PARALLEL_MIN_SIZE, serial_twin, use_parallel


@kernel(parallel=True)
def _rotate(x, cos, sin, sign, heads, out):
    # x, out: (B, T, NH, hs), out may be x; cos, sin: (T, hs // 2); sign: +1 forward, -1
    # backward; heads h < heads turn, the others are copied
    B, T, NH, hs = x.shape
    half = hs // 2
    for bt in prange(B * T):
        b, t = bt // T, bt % T
        for h in range(heads, NH):
            for j in range(hs):
                out[b, t, h, j] = x[b, t, h, j]
        for h in range(heads):
            for j in range(half):
                c, s = cos[t, j], sign * sin[t, j]
                x1, x2 = x[b, t, h, j], x[b, t, h, j + half]
                out[b, t, h, j] = x1 * c - x2 * s
                out[b, t, h, j + half] = x2 * c + x1 * s


_rotate_serial = serial_twin(_rotate)


def rope_tables(inv_freq: np.ndarray, positions: np.ndarray, dtype=np.float32
                ) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position·inv_freq for each of ``positions`` (T,): (T, hs // 2) each.

    The angles are computed in float64 and rounded once, so long contexts keep their accuracy.
    """
    angles = np.outer(np.asarray(positions, np.float64), np.asarray(inv_freq, np.float64))
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def _run(op: str, x: np.ndarray, cos: np.ndarray, sin: np.ndarray, sign: int, heads: int | None,
         out: np.ndarray | None) -> np.ndarray:
    x = float_array(op, "x", x)
    if x.ndim != 4 or x.shape[-1] % 2:
        raise ValueError(f"{op}: x must be (B, T, NH, hs) with an even hs, got shape {x.shape}")
    T, hs = x.shape[1], x.shape[3]
    cos = float_array(op, "cos", cos, x.dtype)
    sin = float_array(op, "sin", sin, x.dtype)
    same_shape(op, "cos", cos, (T, hs // 2))
    same_shape(op, "sin", sin, (T, hs // 2))
    heads = x.shape[2] if heads is None else heads
    if not 0 <= heads <= x.shape[2]:
        raise ValueError(f"{op}: heads={heads} is not in 0..{x.shape[2]} (x has shape {x.shape})")
    out = output(op, out, x.shape, x.dtype)
    run = _rotate if use_parallel(x.size, PARALLEL_MIN_SIZE) else _rotate_serial
    run(x, cos, sin, x.dtype.type(sign), heads, out)
    return out


def rope_forward(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, heads: int | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (B, T, NH, hs) with its first ``heads`` heads (default all) rotated by their
    position's angles (cos, sin from ``rope_tables``, (T, hs // 2), row t for the t-th position
    of x) and the others copied. ``out`` may be ``x`` itself (in place).

    >>> cos, sin = rope_tables(np.array([1.0]), np.arange(2), np.float64)
    >>> rope_forward(np.array([[[[1.0, 0.0]], [[1.0, 0.0]]]]), cos, sin)[0, :, 0].round(4)
    array([[1.    , 0.    ],
           [0.5403, 0.8415]])
    """
    return _run("rope_forward", x, cos, sin, 1, heads, out)


def rope_backward(dout: np.ndarray, cos: np.ndarray, sin: np.ndarray, heads: int | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``rope_forward``: ``dout`` rotated back by the same angles."""
    return _run("rope_backward", dout, cos, sin, -1, heads, out)
